import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { JiraGateSchema, SlackGateSchema, TriggerGateSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import type { RouteService } from "../gen/hookmesh/tasks/v1/route_service_pb.js";

interface DefaultGates {
  slack: MessageInitShape<typeof SlackGateSchema>;
  jira: MessageInitShape<typeof JiraGateSchema>;
}

/** The workspace of the Slack fixtures and the project of the Jira ones. */
export const FIXTURE_GATES: DefaultGates = { slack: { teamIds: ["T061EG9R6"] }, jira: { projectKeys: ["PROJ"] } };

/**
 * Opens the default `slack-mention` and `jira-mention` rules, which start closed, with these
 * gates, as an operator would over RouteService.
 */
export async function openDefaultRules(
  routingRules: Client<typeof RouteService>,
  gates: DefaultGates = FIXTURE_GATES,
): Promise<void> {
  const { routes } = await routingRules.listRoutes({});
  for (const [id, gate] of [
    [
      "slack-mention",
      create(TriggerGateSchema, { provider: { case: "slack", value: create(SlackGateSchema, gates.slack) } }),
    ],
    [
      "jira-mention",
      create(TriggerGateSchema, { provider: { case: "jira", value: create(JiraGateSchema, gates.jira) } }),
    ],
  ] as const) {
    await routingRules.upsertRoute({ route: { ...routes.find((rule) => rule.id === id)!, gate } });
  }
}
