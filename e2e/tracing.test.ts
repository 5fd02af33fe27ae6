import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRETS } from "@hookmesh/gateway/testing";
import type { ClientFactory } from "@hookmesh/kit";
import {
  freePort,
  OtlpReceiver,
  type ReceivedSpan,
  signGitHub,
  startService,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Health } from "../gen/health/v1/health_pb.js";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FakeGitHub } from "../services/github/test/fake-github.js";

const POLL = { timeout: 60_000, interval: 100 };
/** Four processes starting on a busy two-core machine. */
const STARTUP = { timeout: 90_000, interval: 250 };
const GITHUB_TOKEN = "ghp_tracingTestToken0123456789abcdef";
/** The trace a proxy in front of the gateway began, which the delivery continues. */
const TRACE_ID = "5b8efff798038103d269b633813fc60c";
const EDGE_SPAN_ID = "eee19b7ec3c1b174";

const SERVER = 2;
const CLIENT = 3;
const CONSUMER = 5;

/**
 * One signed webhook, one trace: the gateway, tasks, a worker and the github service run as
 * processes, as their packages start them (so each sets up tracing in runMain from the standard
 * OTEL_* variables), exporting over OTLP/HTTP JSON to a collector the test runs. The delivery's
 * spans, from the webhook request through the queue to the comment created on GitHub, share the
 * trace the webhook came with, each the child of the span that caused it.
 */
describe("tracing, end to end", () => {
  let db: TestRedis;
  let otlp: OtlpReceiver;
  let github: FakeGitHub;
  let operator: ClientFactory;
  let dir: string;
  let gatewayBase: string;
  let tasksUrl: string;
  const processes: ChildProcess[] = [];

  beforeAll(async () => {
    const identities = await testIdentities();
    operator = identities.clients("operator");
    db = await testRedis("tracing");
    otlp = await OtlpReceiver.start();
    github = await FakeGitHub.start({ tokens: [GITHUB_TOKEN] });
    github.addIssue("octo", "repo", 7);
    dir = mkdtempSync(join(tmpdir(), "hookmesh-tracing-"));
    const [tasksPort, gatewayPort, gatewayHttpPort, githubPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    tasksUrl = `https://127.0.0.1:${tasksPort}`;
    const githubUrl = `https://127.0.0.1:${githubPort}`;
    gatewayBase = `http://127.0.0.1:${gatewayHttpPort}`;
    const common = {
      ...identities.env,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      // Spans leave each process within a fifth of a second, not the default five.
      OTEL_BSP_SCHEDULE_DELAY: "200",
      LOG_LEVEL: "warn",
      SHUTDOWN_GRACE_MS: "0",
    };
    processes.push(
      startService("@hookmesh/tasks", {
        ...common,
        TASKS_PORT: String(tasksPort),
        TASKS_HOST: "127.0.0.1",
        TASKS_REDIS_PREFIX: db.prefix,
        GITHUB_URL: githubUrl,
      }),
      startService("@hookmesh/github", {
        ...common,
        GITHUB_PORT: String(githubPort),
        GITHUB_HOST: "127.0.0.1",
        GITHUB_API_URL: github.url,
        GITHUB_TOKEN,
        GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      }),
      startService("@hookmesh/gateway", {
        ...common,
        GATEWAY_PORT: String(gatewayPort),
        GATEWAY_HTTP_PORT: String(gatewayHttpPort),
        GATEWAY_HOST: "127.0.0.1",
        GATEWAY_REDIS_PREFIX: `${db.prefix}gateway:`,
        TASKS_URL: tasksUrl,
        GITHUB_WEBHOOK_SECRET: TEST_SECRETS.github,
      }),
      startService("@hookmesh/agent", {
        ...common,
        TASKS_URL: tasksUrl,
        GITHUB_URL: githubUrl,
        AGENT_ID: "worker-traced",
        AGENT_PORT: "0",
        AGENT_HOST: "127.0.0.1",
        AGENT_RUNNER: "command",
        AGENT_COMMAND: "echo 'traced answer'",
        AGENT_CONCURRENCY: "1",
        AGENT_WORKDIR: join(dir, "runs"),
        AGENT_PROGRESS_INTERVAL_MS: "0",
        HOOKMESH_DASHBOARD_URL: "https://hookmesh.example",
      }),
    );
    // A delivery is submitted straight to tasks only when tasks answers; the github service
    // must answer the worker's acknowledgment.
    // Probes whose breaker lets the next probe through at once: a service still starting is not an outage.
    const probes = identities.clients("operator", { breaker: { resetTimeoutMs: 1 } });
    try {
      for (const [url, name] of [
        [tasksUrl, "tasks"],
        [githubUrl, "github"],
        [`https://127.0.0.1:${gatewayPort}`, "gateway"],
      ] as const) {
        await vi.waitFor(() => probes.client(Health, url, name).check({ service: "" }, { timeoutMs: 2_000 }), STARTUP);
      }
    } finally {
      probes.close();
    }
  }, 120_000);

  afterAll(async () => {
    for (const child of processes) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    }
    operator?.close();
    await github?.close();
    await otlp?.close();
    await db?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it("follows one signed webhook through the gateway, tasks, the queue, the worker and GitHub in one trace", async () => {
    const body = JSON.stringify({
      action: "created",
      issue: { number: 7, title: "Flaky test" },
      comment: { id: 99, body: "@hookmesh why is this flaky?", author_association: "OWNER" },
      repository: { name: "repo", owner: { login: "octo" } },
      sender: { id: 1, login: "octocat", type: "User" },
    });
    const deliveryId = randomUUID();
    const res = await fetch(`${gatewayBase}/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "issue_comment",
        "x-github-delivery": deliveryId,
        "x-hub-signature-256": signGitHub(body, TEST_SECRETS.github),
        traceparent: `00-${TRACE_ID}-${EDGE_SPAN_ID}-01`,
      },
      body,
    });
    expect(res.status).toBe(202);
    const taskId = ((await res.json()) as { task_id: string }).task_id;
    expect(taskId).toBeTruthy();
    const tasks = operator.client(TaskService, tasksUrl, "tasks");
    await expect.poll(async () => (await tasks.getTask({ id: taskId })).task?.state, POLL).toBe(TaskState.SUCCEEDED);

    // The run's span ends once its result is reported; the last reply is edited before that.
    const spans = await until(() => {
      const all = otlp.trace(TRACE_ID);
      const run = all.find((s) => s.name === "agent.run");
      const edits = all.filter((s) => s.service === "github" && s.name === "PATCH");
      return run && edits.length > 0 ? all : undefined;
    });
    const one = (service: string, name: string, kind?: number, parent?: ReceivedSpan): ReceivedSpan => {
      const found = spans.filter(
        (s) =>
          s.service === service &&
          s.name === name &&
          (kind === undefined || s.kind === kind) &&
          (parent === undefined || s.parentSpanId === parent.spanId),
      );
      expect(found, `${service} ${name}${parent ? ` under ${parent.name}` : ""}`).toHaveLength(1);
      return found[0]!;
    };
    const ids = { "hookmesh.task_id": taskId, "hookmesh.delivery_id": deliveryId, "hookmesh.provider": "github" };

    // The gateway continues the webhook's trace; behind its answer, the forwarder submits the
    // delivery in that trace (a batch of one here).
    const webhook = one("gateway", "POST /webhooks/{endpoint}", SERVER);
    expect(webhook.parentSpanId).toBe(EDGE_SPAN_ID);
    expect(webhook.attributes).toMatchObject({ ...ids, "http.response.status_code": 202 });
    const forward = one("gateway", "gateway.forward", undefined, webhook);
    expect(forward.attributes).toMatchObject({ "hookmesh.delivery_id": deliveryId, "hookmesh.batch_size": 1 });
    const submit = one("gateway", "hookmesh.tasks.v1.TaskService/SubmitEvents", CLIENT, forward);
    expect(submit.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.grpc.status_code": 0 });

    // Tasks serves SubmitEvents as its child, and routes and enqueues within it.
    const submitted = one("tasks", "hookmesh.tasks.v1.TaskService/SubmitEvents", SERVER, submit);
    expect(submitted.attributes).toMatchObject({ ...ids, "rpc.method": "SubmitEvents" });
    const routed = one("tasks", "tasks.route", undefined, submitted);
    expect(routed.attributes).toMatchObject({ "hookmesh.matched": true });
    expect(routed.attributes["hookmesh.route_id"]).toBeTruthy();
    one("tasks", "tasks.enqueue", undefined, submitted);

    // Across the queue: the worker's run continues from the webhook request's span, which the task carried.
    const run = one("agent", "agent.run", CONSUMER, webhook);
    expect(run.attributes).toMatchObject({
      ...ids,
      "hookmesh.attempt": 1,
      "hookmesh.runner": "command",
      "hookmesh.outcome": "SUCCEEDED",
      "hookmesh.route_id": routed.attributes["hookmesh.route_id"],
    });
    const agentProcess = one("agent", "agent.process", undefined, run);
    expect(agentProcess.attributes).toMatchObject({ "hookmesh.runner": "command", "process.exit.code": 0 });
    one("agent", "hookmesh.tasks.v1.WorkerService/CompleteTask", CLIENT, run);

    // Every integration call: the worker's RPC, the github service's handling of it, and its call to GitHub's API.
    const create = one("agent", "hookmesh.github.v1.GitHubService/CreateComment", CLIENT, run);
    const created = one("github", "hookmesh.github.v1.GitHubService/CreateComment", SERVER, create);
    const post = one("github", "POST", CLIENT, created);
    expect(post.attributes).toMatchObject({
      "http.request.method": "POST",
      "http.response.status_code": 201,
      "url.full": `${github.url}/repos/octo/repo/issues/7/comments`,
      "hookmesh.provider": "github",
    });
    const update = one("agent", "hookmesh.github.v1.GitHubService/UpdateComment", CLIENT, run);
    const updated = one("github", "hookmesh.github.v1.GitHubService/UpdateComment", SERVER, update);
    one("github", "PATCH", CLIENT, updated);

    // Nothing of the delivery fell out of its trace: every span's parent is in it, but the edge's.
    const inTrace = new Set(spans.map((s) => s.spanId));
    const orphans = spans.filter((s) => s.parentSpanId !== EDGE_SPAN_ID && !inTrace.has(s.parentSpanId));
    expect(orphans.map((s) => `${s.service} ${s.name}`)).toEqual([]);
  }, 120_000);
});

/** What `probe` gives once it gives something, polling the collector's spans. */
async function until<T>(probe: () => T | undefined): Promise<T> {
  let found: T | undefined;
  await expect
    .poll(() => {
      found = probe();
      return found !== undefined;
    }, POLL)
    .toBe(true);
  return found!;
}
