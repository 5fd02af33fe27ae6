import { create } from "@bufbuild/protobuf";
import { Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import { AgentProfileSchema, type Route, RouteSchema } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";

/** Leaves room above for an operator's rules, which then win, and below for catch-alls. */
export const DEFAULT_PRIORITY = 100;

/**
 * The rules hookmesh starts with: text that mentions the configured handle becomes a task. The
 * mention is left empty so that it follows `HOOKMESH_MENTION`, and the profile is empty so that
 * it follows the worker's defaults. GitHub's rule works at once, for people with write access
 * (its association gate); Slack's and Jira's have no gate, so they stay closed until an
 * operator names the workspace, channels, people or projects that may use them: anyone who can
 * post in a Slack workspace or comment on a Jira issue is not someone who may run an agent.
 */
export function defaultRoutes(): Route[] {
  const mentionRoute = (id: string, provider: Provider, description: string, eventTypes: string[], actions: string[]) =>
    create(RouteSchema, {
      id,
      description,
      provider,
      eventTypes,
      actions,
      trigger: { kind: { case: "mention", value: {} } },
      profile: create(AgentProfileSchema),
      priority: DEFAULT_PRIORITY,
    });
  return [
    mentionRoute(
      "github-mention",
      Provider.GITHUB,
      "A new issue, pull request, comment or review on GitHub that mentions hookmesh",
      ["issue_comment", "issues", "pull_request", "pull_request_review_comment", "pull_request_review"],
      // Together with the event types: comments created, issues and pull requests opened,
      // reviews submitted. Edits do not trigger, so fixing a typo does not start a second run.
      ["created", "opened", "submitted"],
    ),
    mentionRoute(
      "jira-mention",
      Provider.JIRA,
      "A new Jira issue or comment that mentions hookmesh; closed until gate.jira names projects or accounts",
      ["comment_created", "jira:issue_created"],
      [],
    ),
    mentionRoute(
      "slack-mention",
      Provider.SLACK,
      "A Slack message that mentions hookmesh; closed until gate.slack names workspaces, channels or users",
      ["app_mention", "message"],
      [],
    ),
  ];
}
