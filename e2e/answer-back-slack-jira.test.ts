import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fixture as fixtureBytes, type RunningGateway, startGateway, TEST_SECRETS } from "@hookmesh/gateway/testing";
import { type ClientFactory, createLogger } from "@hookmesh/kit";
import {
  freePort,
  signJira,
  signSlack,
  startService,
  type TestIdentities,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RouteService } from "../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FakeJira } from "../services/jira/test/fake-jira.js";
import { CHANNEL, FakeSlack, TEST_TOKEN } from "../services/slack/test/fake-slack.js";
import { openDefaultRules } from "./gates.js";

/** How long, and how often, to look for what the mesh does in the background. */
const POLL = { timeout: 20_000, interval: 50 };

/** The Jira account the jira service signs in as, and the Authorization the Jira-like server expects of it. */
const EMAIL = "dev@example.com";
const API_TOKEN = "atl-api-token-5eCr3t";
const BASIC_AUTH = `Basic ${Buffer.from(`${EMAIL}:${API_TOKEN}`).toString("base64")}`;

const fixture = (name: string) => JSON.parse(fixtureBytes(name).toString("utf8")) as Record<string, unknown>;

/**
 * Answering back on Slack and Jira, end to end: signed deliveries through the real gateway,
 * tasks, a real worker process and the real integration services, against Slack-like and
 * Jira-like servers; every hop under the defaults (mTLS, the contracts' access policy).
 */
describe("answering back on Slack and Jira, end to end", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let slack: FakeSlack;
  let jira: FakeJira;
  let dir: string;
  const processes: ChildProcess[] = [];
  const logger = createLogger({ service: "test", level: "silent" });

  let identities: TestIdentities;
  let operator: ClientFactory;

  function startProcess(packageName: string, env: Record<string, string>): void {
    processes.push(startService(packageName, { LOG_LEVEL: "warn", ...identities.env, ...env }));
  }

  beforeAll(async () => {
    identities = await testIdentities();
    operator = identities.clients("operator");
    db = await testRedis("answer-back-slack-jira");
    tasks = await startTasks(db, logger, { env: identities.env });
    await openDefaultRules(operator.client(RouteService, tasks.url, "tasks"));
    gateway = await startGateway(db, tasks.url, logger, identities.env);
    slack = await FakeSlack.start();
    jira = await new FakeJira().start();
    jira.expectedAuth = BASIC_AUTH;
    const [slackPort, jiraPort] = [await freePort(), await freePort()];
    startProcess("@hookmesh/slack", {
      SLACK_PORT: String(slackPort),
      SLACK_HOST: "127.0.0.1",
      SLACK_API_URL: slack.url,
      SLACK_BOT_TOKEN: TEST_TOKEN,
      SLACK_REDIS_PREFIX: `${db.prefix}slack:`,
    });
    startProcess("@hookmesh/jira", {
      JIRA_PORT: String(jiraPort),
      JIRA_HOST: "127.0.0.1",
      JIRA_BASE_URL: jira.baseUrl,
      JIRA_EMAIL: EMAIL,
      JIRA_API_TOKEN: API_TOKEN,
      JIRA_REDIS_PREFIX: `${db.prefix}jira:`,
    });
    dir = mkdtempSync(join(tmpdir(), "hookmesh-answer-back-"));
    startProcess("@hookmesh/agent", {
      TASKS_URL: tasks.url,
      SLACK_URL: `https://127.0.0.1:${slackPort}`,
      JIRA_URL: `https://127.0.0.1:${jiraPort}`,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_RUNNER: "command",
      AGENT_COMMAND: "echo 'deployed at noon'",
      AGENT_WORKDIR: join(dir, "runs"),
      AGENT_PROGRESS_INTERVAL_MS: "0",
    });
  });

  afterAll(async () => {
    operator?.close();
    for (const child of processes) {
      child.kill("SIGTERM");
      if (child.exitCode === null) await once(child, "exit");
    }
    await gateway?.close();
    await tasks?.close();
    await slack?.close();
    await jira?.close();
    await db?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  async function post(route: string, body: string, headers: Record<string, string>): Promise<string> {
    const res = await fetch(`${gateway.base}/webhooks/${route}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });
    expect(res.status).toBe(202);
    const { task_id: taskId } = (await res.json()) as { task_id: string };
    // The task is made behind the acknowledgment.
    await gateway.forwarded();
    return taskId;
  }

  async function succeeded(id: string): Promise<boolean> {
    const { task } = await operator.client(TaskService, tasks.url, "tasks").getTask({ id });
    return task!.state === TaskState.SUCCEEDED;
  }

  it("replies to a Slack app_mention once in its thread, then updates that reply with the answer", async () => {
    const payload = fixture("slack-app-mention.json");
    const event = payload.event as Record<string, unknown>;
    const ts = `${Math.floor(Date.now() / 1000)}.000100`;
    Object.assign(event, { channel: CHANNEL, ts, thread_ts: undefined });
    payload.event_id = `Ev${randomUUID().slice(0, 8)}`;
    const body = JSON.stringify(payload);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const id = await post("slack", body, {
      "x-slack-request-timestamp": timestamp,
      "x-slack-signature": signSlack(body, TEST_SECRETS.slack, timestamp),
    });
    await expect.poll(() => succeeded(id), POLL).toBe(true);
    await expect
      .poll(
        () =>
          slack
            .calls("chat.update")
            .some((c) => String((c.body as { text?: string }).text).includes("deployed at noon")),
        POLL,
      )
      .toBe(true);
    const posts = slack
      .calls("chat.postMessage")
      .filter((c) => String((c.body as { text?: string }).text).includes(id));
    expect(posts).toHaveLength(1);
    expect(posts[0]!.body).toMatchObject({ channel: CHANNEL, thread_ts: ts });
    expect(posts[0]!.headers.authorization).toBe(`Bearer ${TEST_TOKEN}`);
  });

  it("comments once on a Jira issue whose comment mentions @hookmesh, then edits that comment into the answer", async () => {
    const body = JSON.stringify(fixture("jira-comment-created.json"));
    const id = await post("jira", body, {
      "x-atlassian-webhook-identifier": randomUUID(),
      "x-hub-signature": signJira(body, TEST_SECRETS.jira),
    });
    await expect.poll(() => succeeded(id), POLL).toBe(true);
    await expect
      .poll(() => [...jira.comments.values()].some((c) => JSON.stringify(c.body).includes("deployed at noon")), POLL)
      .toBe(true);
    const adds = jira.received.filter((r) => r.method === "POST" && r.path.endsWith("/issue/PROJ-7/comment"));
    expect(adds).toHaveLength(1);
    const ours = [...jira.comments.values()].filter((c) => JSON.stringify(c.body).includes(id));
    expect(ours).toHaveLength(1);
    expect(
      jira.received.some((r) => r.method === "PUT" && r.path.endsWith(`/issue/PROJ-7/comment/${ours[0]!.id}`)),
    ).toBe(true);
  });
});
