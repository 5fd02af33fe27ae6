import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { fixture as fixtureBytes, type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { type ClientFactory, createLogger } from "@hookmesh/kit";
import {
  freePort,
  startService,
  type TestIdentities,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteService } from "../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FakeGitHub } from "../services/github/test/fake-github.js";
import { FakeJira } from "../services/jira/test/fake-jira.js";
import { githubHeaders, jiraHeaders, post, slackHeaders } from "./deliveries.js";
import { openDefaultRules } from "./gates.js";

const GITHUB_TOKEN = "ghp_triggerGatesTestToken0123456789abcd";
/** The author of the Jira fixture's comment, the one account the Jira rule lets through. */
const JIRA_ACCOUNT = "5b10ac8d82e05b22cc7d4ef5";
/** A member of the Jira group that the group-gated rule lets through. */
const JIRA_TRIAGER = "557058:0c9a1f3e-triager";
const JIRA_EMAIL = "dev@example.com";
const JIRA_API_TOKEN = "atl-api-token-gates";

const fixture = (name: string) => JSON.parse(fixtureBytes(name).toString("utf8")) as Record<string, never>;

/**
 * Who may start a run, on real signed deliveries through the real gateway and tasks service
 * and, for GitHub labels, the real github service (a process) asking a GitHub-like server for
 * the labeler's permission; every hop under the defaults (mTLS and the access policy). A
 * refused event becomes an IGNORED task with the gate's reason, which is never queued, so
 * nothing runs.
 */
describe("trigger gates on real deliveries", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let github: FakeGitHub;
  let githubService: ChildProcess;
  let jira: FakeJira;
  let jiraService: ChildProcess;
  let identities: TestIdentities;
  let operator: ClientFactory;
  const logger = createLogger({ service: "test", level: "silent" });

  beforeAll(async () => {
    identities = await testIdentities();
    operator = identities.clients("operator");
    db = await testRedis("e2e-trigger-gates");
    github = await FakeGitHub.start({ tokens: [GITHUB_TOKEN] });
    github.roles.set("octo/repo:writer", "write");
    github.roles.set("octo/repo:late-writer", "maintain");
    github.roles.set("octo/repo:triager", "triage");
    const githubPort = await freePort();
    const githubUrl = `https://127.0.0.1:${githubPort}`;
    githubService = startService("@hookmesh/github", {
      ...identities.env,
      GITHUB_PORT: String(githubPort),
      GITHUB_HOST: "127.0.0.1",
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN,
      GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      LOG_LEVEL: "warn",
    });
    jira = await new FakeJira().start();
    jira.expectedAuth = `Basic ${Buffer.from(`${JIRA_EMAIL}:${JIRA_API_TOKEN}`).toString("base64")}`;
    jira.groups.set(JIRA_TRIAGER, ["jira-software-users", "Triage"]);
    jira.groups.set(JIRA_ACCOUNT, ["jira-software-users"]);
    const jiraPort = await freePort();
    const jiraUrl = `https://127.0.0.1:${jiraPort}`;
    jiraService = startService("@hookmesh/jira", {
      ...identities.env,
      JIRA_PORT: String(jiraPort),
      JIRA_HOST: "127.0.0.1",
      JIRA_BASE_URL: jira.baseUrl,
      JIRA_EMAIL,
      JIRA_API_TOKEN,
      JIRA_REDIS_PREFIX: `${db.prefix}jira:`,
      LOG_LEVEL: "warn",
    });
    tasks = await startTasks(db, logger, { env: { ...identities.env, GITHUB_URL: githubUrl, JIRA_URL: jiraUrl } });
    gateway = await startGateway(db, tasks.url, logger, identities.env);
    const routingRules = operator.client(RouteService, tasks.url, "tasks");
    await openDefaultRules(routingRules, { slack: { teamIds: ["T061EG9R6"] }, jira: { accountIds: [JIRA_ACCOUNT] } });
    await routingRules.upsertRoute({
      route: {
        id: "github-label",
        provider: Provider.GITHUB,
        eventTypes: ["issues"],
        actions: ["labeled"],
        trigger: { kind: { case: "label", value: { label: "hookmesh" } } },
        profile: {},
        priority: 100,
      },
    });
    await routingRules.upsertRoute({
      route: {
        id: "jira-triage",
        description: "Members of the Triage group asking @triage",
        provider: Provider.JIRA,
        eventTypes: ["comment_created"],
        trigger: { kind: { case: "mention", value: { mention: "@triage" } } },
        gate: { provider: { case: "jira", value: { groups: ["triage"] } } },
        profile: {},
        priority: 200,
      },
    });
    for (const [url, name] of [
      [githubUrl, "github"],
      [jiraUrl, "jira"],
    ] as const) {
      const health = operator.client(Health, url, name);
      await vi.waitFor(
        async () => {
          const { status } = await health.check({}, { timeoutMs: 1_000 });
          if (status !== ServingStatus.SERVING) throw new Error(`the ${name} service is not serving yet`);
        },
        { timeout: 25_000, interval: 100 },
      );
    }
  }, 30_000);

  afterAll(async () => {
    operator?.close();
    for (const child of [githubService, jiraService]) {
      if (child && child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    }
    await gateway?.close();
    await tasks?.close();
    await github?.close();
    await jira?.close();
    await db?.cleanup();
  });

  /** The state of the task a delivery became, and the reason it was routed or ignored. */
  async function outcome(reply: ReturnType<typeof post>): Promise<[string, string]> {
    const { status, json } = await reply;
    expect(status).toBe(202);
    const { task } = await operator.client(TaskService, tasks.url, "tasks").getTask({ id: String(json.task_id) });
    return [TaskState[task!.state], task!.transitions[0]!.reason];
  }

  function slackMention(event: Record<string, unknown> = {}) {
    const payload = fixture("slack-app-mention.json");
    Object.assign(payload, { event_id: `Ev${randomUUID().slice(0, 8)}` });
    Object.assign(payload.event, event);
    const body = JSON.stringify(payload);
    return post(gateway.base, "slack", body, slackHeaders(body));
  }

  function jiraComment(accountId: string, text?: string) {
    const payload = fixture("jira-comment-created.json");
    for (const who of ["author", "updateAuthor"] as const) Object.assign(payload.comment[who], { accountId });
    if (text !== undefined) Object.assign(payload.comment, { body: text });
    const body = JSON.stringify(payload);
    return post(gateway.base, "jira", body, jiraHeaders(body));
  }

  function githubLabel(sender: string) {
    const body = JSON.stringify({
      action: "labeled",
      // The issue's author owns the repository: a gate reading the payload's association would let anyone through.
      issue: { number: 7, title: "Flaky test", body: "It fails on Tuesdays", author_association: "OWNER" },
      label: { name: "hookmesh" },
      repository: { name: "repo", owner: { login: "octo" } },
      sender: { id: 2, login: sender, type: "User" },
    });
    return post(gateway.base, "github", body, githubHeaders(body, { event: "issues" }));
  }

  it("a Slack bot's message that mentions hookmesh runs nothing; a person's in the allowed workspace is queued", async () => {
    expect(await outcome(slackMention({ bot_id: "B0DEPLOYBOT", bot_profile: { name: "deploy-bot" } }))).toEqual([
      "IGNORED",
      "Slack bot deploy-bot never triggers",
    ]);
    expect(await outcome(slackMention({ subtype: "bot_message", bot_id: "B0DEPLOYBOT", user: undefined }))).toEqual([
      "IGNORED",
      expect.stringMatching(/^Slack bot .* never triggers$/),
    ]);
    expect(await outcome(slackMention())).toEqual(["QUEUED", "matched route slack-mention"]);
  });

  it("a Slack Connect guest from another organization, in a channel of the allowed workspace, runs nothing", async () => {
    expect(await outcome(slackMention({ user: "U0GUEST", user_team: "T0PARTNER" }))).toEqual([
      "IGNORED",
      "user's workspace T0PARTNER is not in gate.slack.team_ids of slack-mention",
    ]);
  });

  it("a Slack mention from another workspace runs nothing", async () => {
    const payload = fixture("slack-app-mention.json");
    Object.assign(payload, { event_id: `Ev${randomUUID().slice(0, 8)}`, team_id: "T0STRANGER" });
    const body = JSON.stringify(payload);
    expect(await outcome(post(gateway.base, "slack", body, slackHeaders(body)))).toEqual([
      "IGNORED",
      "workspace T0STRANGER is not in gate.slack.team_ids of slack-mention",
    ]);
  });

  it("a Jira comment from an account outside the allowlist runs nothing; the allowed account's is queued", async () => {
    expect(await outcome(jiraComment("557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"))).toEqual([
      "IGNORED",
      "account 557058:f58131cb-b67d-43c7-b30d-6b58d40bd077 is not in gate.jira.account_ids of jira-mention",
    ]);
    expect(await outcome(jiraComment(JIRA_ACCOUNT))).toEqual(["QUEUED", "matched route jira-mention"]);
  });

  it("a Jira rule gated by group asks the jira service: a member's comment is queued, a non-member's runs nothing", async () => {
    expect(await outcome(jiraComment(JIRA_TRIAGER, "@triage is this a duplicate?"))).toEqual([
      "QUEUED",
      "matched route jira-triage",
    ]);
    expect(await outcome(jiraComment(JIRA_ACCOUNT, "@triage is this a duplicate?"))).toEqual([
      "IGNORED",
      `account ${JIRA_ACCOUNT} is in none of gate.jira.groups of jira-triage`,
    ]);
    expect(jira.received.map((r) => r.path + r.query)).toEqual([
      `/rest/api/3/user/groups?accountId=${encodeURIComponent(JIRA_TRIAGER)}`,
      `/rest/api/3/user/groups?accountId=${JIRA_ACCOUNT}`,
    ]);
  });

  it("a GitHub label added by someone without write permission runs nothing; a writer's is queued", async () => {
    expect(await outcome(githubLabel("triager"))).toEqual([
      "IGNORED",
      "labeler triager (permission as NONE) may not trigger github-label",
    ]);
    expect(await outcome(githubLabel("drive-by"))).toEqual([
      "IGNORED",
      "labeler drive-by (permission as NONE) may not trigger github-label",
    ]);
    expect(await outcome(githubLabel("writer"))).toEqual(["QUEUED", "matched route github-label"]);
    expect(github.lines()).toEqual(
      expect.arrayContaining([
        "GET /repos/octo/repo/collaborators/triager/permission",
        "GET /repos/octo/repo/collaborators/writer/permission",
      ]),
    );
  });

  it("with the github service down, a label runs nothing (fail closed) and says why", async () => {
    githubService.kill("SIGTERM");
    await once(githubService, "exit");
    const [state, reason] = await outcome(githubLabel("late-writer"));
    expect(state).toBe("IGNORED");
    expect(reason).toMatch(
      /^labeler late-writer may not trigger github-label: the github service could not check their permission \(Unavailable\)$/,
    );
  });
});
