/**
 * The mesh on a Redis Cluster (3 masters, 3 replicas, its own processes on loopback): a GitHub
 * mention is answered as on one Redis, and every delivery acknowledged while the master
 * holding the gateway's slot, then the one holding the tasks service's, is killed becomes
 * exactly one task. Acknowledgments wait for a replica (`REDIS_WAIT_REPLICAS=1`), so what the
 * gateway answered 202 for, and what tasks answered a submission for, survives the failover.
 */
import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { createLogger, type Env } from "@hookmesh/kit";
import {
  callError,
  freePort,
  idleConnection,
  startRedisCluster,
  startService,
  type TestRedisCluster,
} from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FakeGitHub } from "../services/github/test/fake-github.js";
import { githubHeaders, githubMention, post, sendContinuously } from "./deliveries.js";
import { listAllTasks, tasksPerDelivery } from "./tasks.js";

const POLL = { timeout: 30_000, interval: 100 };
const GITHUB_TOKEN = "ghp_clusterTestToken0123456789abcdef";
/** The services' prefixes as cluster mode makes them by default: one hash slot each. */
const GATEWAY_PREFIX = "{hookmesh:gateway}:";
const TASKS_PREFIX = "{hookmesh:tasks}:";

/** What every service of the test is started with: the cluster, and writes held until a replica has them. */
function clusterEnv(cluster: TestRedisCluster): Env {
  return { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_WAIT_REPLICAS: "1", REDIS_WAIT_TIMEOUT_MS: "500" };
}

/** An issue comment mentioning the bot, which the default rules queue; `marker` keeps each body unique. */
function mentionBody(marker: string, text = "look at this"): string {
  return githubMention(`${text} ${marker}`);
}

describe("the mesh on a Redis Cluster", () => {
  let cluster: TestRedisCluster;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let github: FakeGitHub;
  let githubService: ChildProcess | undefined;
  let githubUrl: string;
  let dir: string;
  let sessions: Http2SessionManager;
  let taskClient: Client<typeof TaskService>;
  const workers: ChildProcess[] = [];
  const logger = createLogger({ service: "test", level: "silent" });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "hookmesh-cluster-"));
    cluster = await startRedisCluster();
    const env = clusterEnv(cluster);
    // The harness's prefixes are the shared Redis's; on the cluster each service has its default, hash-tagged.
    const own = { prefix: "unused:" };
    tasks = await startTasks(own, logger, {
      env: { ...env, TASKS_REDIS_PREFIX: TASKS_PREFIX, TASKS_RETRY_BASE_MS: "100", TASKS_RETRY_MAX_MS: "200" },
    });
    gateway = await startGateway(own, tasks.url, logger, { ...env, GATEWAY_REDIS_PREFIX: GATEWAY_PREFIX });
    sessions = new Http2SessionManager(tasks.url);
    taskClient = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url, sessionManager: sessions }));
    github = await FakeGitHub.start({ tokens: [GITHUB_TOKEN] });
    github.addIssue("octo", "repo", 7);
    const port = await freePort();
    githubUrl = `http://127.0.0.1:${port}`;
    githubService = startService("@hookmesh/github", {
      ...env,
      HOOKMESH_INSECURE: "1",
      GITHUB_PORT: String(port),
      GITHUB_HOST: "127.0.0.1",
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN,
      LOG_LEVEL: "warn",
    });
    // Started here, so that its start-up (slow on a loaded machine) overlaps the rest.
    const worker = startService("@hookmesh/agent", {
      HOOKMESH_INSECURE: "1",
      TASKS_URL: tasks.url,
      GITHUB_URL: githubUrl,
      AGENT_ID: `worker-${randomUUID().slice(0, 8)}`,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_RUNNER: "command",
      // The run is an echo; sandboxing is the agent-sandbox test's subject, not this one's.
      AGENT_SANDBOX: "off",
      AGENT_COMMAND: "echo 'answered from the cluster'",
      AGENT_CONCURRENCY: "1",
      AGENT_WORKDIR: join(dir, "runs"),
      AGENT_PROGRESS_INTERVAL_MS: "0",
      HOOKMESH_DASHBOARD_URL: "https://hookmesh.example",
      LOG_LEVEL: "warn",
    });
    workers.push(worker);
    // The worker answers through the github service once, and gives the reply up if it is not
    // there yet: the mention waits until it listens.
    await vi.waitFor(
      async () => {
        const { socket } = await idleConnection(port);
        socket.destroy();
      },
      { timeout: 60_000, interval: 200 },
    );
  }, 90_000);

  afterAll(async () => {
    const stops: Promise<unknown>[] = [];
    for (const child of [...workers, githubService]) {
      if (child && child.exitCode === null && child.signalCode === null) {
        stops.push(once(child, "exit"));
        child.kill("SIGKILL");
      }
    }
    await Promise.allSettled(stops);
    sessions?.abort();
    await gateway?.close().catch(() => {});
    await tasks?.close().catch(() => {});
    await github?.close().catch(() => {});
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("answers a GitHub mention: the task SUCCEEDED and the answer posted", async () => {
    const body = mentionBody(randomUUID(), "why is this test flaky?");
    const reply = await post(gateway.base, "github", body, githubHeaders(body));
    expect(reply.status).toBe(202);
    const id = reply.json.task_id as string;
    const slow = { ...POLL, timeout: 60_000 };
    await expect.poll(async () => (await taskClient.getTask({ id })).task!.state, slow).toBe(TaskState.SUCCEEDED);
    await expect
      .poll(() => [...github.comments.values()].some((c) => String(c.body).includes("answered from the cluster")), POLL)
      .toBe(true);
    // The failover test below counts tasks, not runs: no worker takes part.
    for (const worker of workers) worker.kill("SIGKILL");
  }, 90_000);

  it("acknowledges nothing a replica does not hold: 503 from the gateway, UNAVAILABLE from tasks", async () => {
    // Stopping a master's replica (SIGSTOP) leaves the master up, but a write it takes can no
    // longer be copied; the write itself is kept, so the retry finds it.
    const paused = async <T>(prefix: string, during: () => Promise<T>): Promise<T> => {
      const replica = await cluster.replicaOf(await cluster.masterOf(`${prefix}outbox`));
      process.kill(cluster.pid(replica), "SIGSTOP");
      try {
        return await during();
      } finally {
        process.kill(cluster.pid(replica), "SIGCONT");
      }
    };
    const delivery = `wait-${randomUUID()}`;
    const body = mentionBody(delivery);
    const refused = await paused(GATEWAY_PREFIX, () =>
      fetch(`${gateway.base}/webhooks/github`, { method: "POST", headers: githubHeaders(body, { delivery }), body }),
    );
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("7");
    // The provider sends it again: the first try's claim answers, once a replica holds it.
    const retried = await post(gateway.base, "github", body, githubHeaders(body, { delivery }));
    expect(retried.status).toBe(202);
    // The forwarder submits it to tasks behind the 202.
    const taskId = retried.json.task_id as string;
    const first = await vi.waitFor(async () => (await taskClient.getTask({ id: taskId })).task!, POLL);
    expect(first.event!.deliveryId).toBe(delivery);

    const event = { ...first.event!, deliveryId: `wait-${randomUUID()}` };
    const unavailable = await paused(TASKS_PREFIX, () => callError(taskClient.submitEvent({ event })));
    expect(unavailable.code).toBe(Code.Unavailable);
    const again = await taskClient.submitEvent({ event });
    expect(again.duplicate).toBe(true);
    const tasks = await listAllTasks(taskClient);
    for (const id of [delivery, event.deliveryId]) {
      expect(tasks.filter((t) => t.event!.deliveryId === id)).toHaveLength(1);
    }
  }, 60_000);

  it("makes every delivery acknowledged across two master failovers exactly one task", async () => {
    const senders = sendContinuously(gateway.base, mentionBody, { idPrefix: "cluster-" });
    const { acknowledged, answers } = senders;
    const failover = async (prefix: string) => {
      const before = acknowledged.size;
      await expect.poll(() => acknowledged.size, POLL).toBeGreaterThan(before + 20);
      const master = await cluster.masterOf(`${prefix}outbox`);
      cluster.kill(master);
      // Its replica takes the slots over (node timeout 1 s), with no replica of its own until
      // the old master rejoins: until then nothing is acknowledged, since nothing would survive.
      await cluster.waitHealthy(40_000);
      expect(await cluster.masterOf(`${prefix}outbox`)).not.toBe(master);
      await cluster.restart(master);
      await cluster.waitHealthy(40_000);
      const after = acknowledged.size;
      await expect.poll(() => acknowledged.size, POLL).toBeGreaterThan(after + 20);
    };
    try {
      await failover(GATEWAY_PREFIX);
      await failover(TASKS_PREFIX);
    } finally {
      await senders.stop();
    }
    // Every acknowledged delivery is forwarded and made a task, once.
    await gateway.forwarded(30_000);
    await expect
      .poll(async () => {
        const counts = tasksPerDelivery(await listAllTasks(taskClient));
        return [...acknowledged].filter((id) => !counts.has(id)).length;
      }, POLL)
      .toBe(0);
    const perDelivery = tasksPerDelivery(await listAllTasks(taskClient));
    const missing = [...acknowledged].filter((id) => !perDelivery.has(id));
    const doubled = [...perDelivery].filter(([, count]) => count > 1);
    expect({ missing, doubled }).toEqual({ missing: [], doubled: [] });
    // Some deliveries were refused in the failovers (503, sent again by a real sender), none lost.
    console.info(
      `cluster failovers: ${acknowledged.size} acknowledged, answers ${JSON.stringify(Object.fromEntries(answers))}`,
    );
  }, 150_000);
});
