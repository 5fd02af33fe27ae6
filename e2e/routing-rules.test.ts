import { create } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { exampleOf, fixture, type Payload, type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { createLogger } from "@hookmesh/kit";
import { type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { RouteService } from "../gen/hookmesh/tasks/v1/route_service_pb.js";
import { type Task, TaskState, TaskView } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FORM_TYPE, githubHeaders, jiraHeaders, post, sentryHeaders, slackHeaders } from "./deliveries.js";
import { openDefaultRules } from "./gates.js";

/**
 * Routing rules on real deliveries: what the gateway makes of a provider's webhook is what the
 * tasks service's routing rules (the defaults, and rules stored over RouteService) expect. Each
 * side's own tests cover its half on the contract's Event; only here do the two meet.
 */
describe("routing rules on real deliveries, through the gateway and the tasks service", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let taskService: Client<typeof TaskService>;
  const logger = createLogger({ service: "test", level: "silent" });

  beforeAll(async () => {
    db = await testRedis("e2e-routing-rules");
    tasks = await startTasks(db, logger);
    gateway = await startGateway(db, tasks.url, logger);
    const transport = createGrpcTransport({ baseUrl: tasks.url });
    taskService = createClient(TaskService, transport);
    const routingRules = createClient(RouteService, transport);
    await openDefaultRules(routingRules);
    for (const rule of [
      create(RouteSchema, {
        id: "slack-command",
        provider: Provider.SLACK,
        subjectGlob: "C2147483705",
        trigger: { kind: { case: "slashCommand", value: { command: "/hookmesh" } } },
        gate: { provider: { case: "slack", value: { userIds: ["U2147483697"] } } },
        profile: {},
      }),
      create(RouteSchema, {
        id: "jira-label",
        provider: Provider.JIRA,
        subjectGlob: "PROJ",
        trigger: { kind: { case: "label", value: { label: "hookmesh" } } },
        gate: { provider: { case: "jira", value: { projectKeys: ["PROJ"] } } },
        profile: {},
      }),
      create(RouteSchema, {
        id: "sentry-new-issue",
        provider: Provider.SENTRY,
        subjectGlob: "acme/front-*",
        trigger: { kind: { case: "issueCreated", value: {} } },
        gate: { provider: { case: "sentry", value: { organizations: ["acme"] } } },
        profile: {},
      }),
    ]) {
      await routingRules.upsertRoute({ route: rule });
    }
  });

  afterAll(async () => {
    await gateway?.close();
    await tasks?.close();
    await db?.cleanup();
  });

  /** The task a delivery became, after the gateway acknowledged it. */
  async function taskOf(reply: Promise<{ status: number; json: Record<string, unknown> }>): Promise<Task> {
    const { status, json } = await reply;
    expect(status).toBe(202);
    return (await taskService.getTask({ id: String(json.task_id), view: TaskView.FULL })).task!;
  }

  /** The routing decision a task records: the rule that matched, or why none did. */
  const decision = (task: Task) => task.transitions[0]!.reason;

  /** A real GitHub example payload as GitHub would deliver it, after `edit` changed it. */
  function github(
    eventType: string,
    action: string | undefined,
    edit: (payload: Payload) => void = () => {},
  ): Promise<Task> {
    const payload = exampleOf(eventType, action);
    edit(payload);
    const body = JSON.stringify(payload);
    return taskOf(post(gateway.base, "github", body, githubHeaders(body, { event: eventType })));
  }

  /** Sets the comment's (or review's, or issue's) body and author association. */
  const commentBy = (association: string, text: string) => (payload: Payload) => {
    const item = (payload.comment ?? payload.review ?? payload.issue ?? payload.pull_request) as Payload;
    item.body = text;
    item.author_association = association;
  };

  describe("the default rules on real GitHub payloads", () => {
    it("a comment by the repository owner that mentions hookmesh queues a task of github-mention, with its prompt", async () => {
      const task = await github(
        "issue_comment",
        "created",
        commentBy("OWNER", "Looks wrong.\n\n@hookmesh: fix the spelling\nin the README "),
      );
      expect([task.state, task.routeId, decision(task)]).toEqual([
        TaskState.QUEUED,
        "github-mention",
        "matched route github-mention",
      ]);
      expect(task.prompt).toBe(
        [
          "fix the spelling\nin the README",
          "",
          "Context:",
          "Provider: github",
          "Event: issue_comment created",
          "Subject: github:Codertocat/Hello-World#1",
          "Title: Spelling error in the README file",
          "URL: https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400",
          "Asked by: Codertocat",
        ].join("\n"),
      );
    });

    it.each(["MEMBER", "COLLABORATOR"])("so does one by a %s", async (association) => {
      expect((await github("issue_comment", "created", commentBy(association, "@hookmesh fix it"))).routeId).toBe(
        "github-mention",
      );
    });

    it.each(["NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR"])(
      "one by a %s author is ignored, saying why",
      async (association) => {
        const task = await github("issue_comment", "created", commentBy(association, "@hookmesh fix it"));
        expect([task.state, decision(task)]).toEqual([
          TaskState.IGNORED,
          `author association ${association} may not trigger github-mention`,
        ]);
      },
    );

    it("one by hookmesh's own bot account is ignored by the loop guard", async () => {
      const task = await github("issue_comment", "created", (payload) => {
        commentBy("OWNER", "@hookmesh is working on it")(payload);
        payload.sender = { ...(payload.sender as Payload), login: "hookmesh[bot]", type: "Bot" };
      });
      expect(decision(task)).toBe("event from hookmesh's own bot account hookmesh[bot] (loop guard)");
    });

    it.each([
      ["issues", "opened"],
      ["pull_request", "opened"],
      ["pull_request_review_comment", "created"],
      ["pull_request_review", "submitted"],
    ])("%s %s with a mention in its text triggers github-mention", async (eventType, action) => {
      expect((await github(eventType, action, commentBy("OWNER", "@hookmesh have a look"))).routeId).toBe(
        "github-mention",
      );
    });

    it("a comment without a mention, an edited one and a push match no rule", async () => {
      for (const task of [
        await github(
          "issue_comment",
          "created",
          commentBy("OWNER", "You are totally right! I'll get this fixed right away."),
        ),
        await github("issue_comment", "edited", commentBy("OWNER", "@hookmesh fix it")),
        await github("push", undefined),
      ]) {
        expect([task.state, decision(task)]).toEqual([TaskState.IGNORED, "no rule matched"]);
      }
    });
  });

  describe("Slack, Jira and Sentry", () => {
    it("an app_mention and a mentioning thread reply match the default Slack rule", async () => {
      for (const name of ["slack-app-mention.json", "slack-message-thread.json"]) {
        const body = fixture(name);
        expect((await taskOf(post(gateway.base, "slack", body, slackHeaders(body)))).routeId).toBe("slack-mention");
      }
    });

    it("a slash command matches a slash-command rule for its command, in its channel", async () => {
      const body = new URLSearchParams(
        JSON.parse(fixture("slack-slash-command.json").toString("utf8")) as Record<string, string>,
      ).toString();
      expect((await taskOf(post(gateway.base, "slack", body, slackHeaders(body, FORM_TYPE)))).routeId).toBe(
        "slack-command",
      );
    });

    it("a mentioning Jira comment matches the default Jira rule", async () => {
      const body = fixture("jira-comment-created.json");
      expect((await taskOf(post(gateway.base, "jira", body, jiraHeaders(body)))).routeId).toBe("jira-mention");
    });

    it("the label added to a Jira issue matches a label rule scoped to the issue's project", async () => {
      const body = fixture("jira-issue-updated.json");
      expect((await taskOf(post(gateway.base, "jira", body, jiraHeaders(body)))).routeId).toBe("jira-label");
    });

    it("a new Sentry issue matches an issue-created rule for its organization and project", async () => {
      const body = fixture("sentry-issue-created.json");
      expect((await taskOf(post(gateway.base, "sentry", body, sentryHeaders(body, "issue")))).routeId).toBe(
        "sentry-new-issue",
      );
    });
  });
});
