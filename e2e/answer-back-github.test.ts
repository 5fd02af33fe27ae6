import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
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
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Task, TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FakeGitHub } from "../services/github/test/fake-github.js";
import { githubHeaders, githubMention, post } from "./deliveries.js";

/** How long, and how often, to look for what the mesh does in the background. */
const POLL = { timeout: 20_000, interval: 50 };

const GITHUB_TOKEN = "ghp_endToEndTestToken0123456789abcdef";

/**
 * Answering back, end to end: a signed GitHub comment mentioning @hookmesh enters the real
 * gateway, becomes a task, is run by real worker processes, and the answer reaches a GitHub-like
 * server through the real github integration service (a process, started as its package
 * starts), as one comment created once and edited. Every hop runs under the defaults: mTLS
 * between identities, and each call allowed by its method's access option.
 */
describe("answering back on GitHub, end to end", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let github: FakeGitHub;
  let githubService: ChildProcess;
  let githubUrl: string;
  let dir: string;
  const workers: ChildProcess[] = [];
  const logger = createLogger({ service: "test", level: "silent" });
  let identities: TestIdentities;
  let operator: ClientFactory;

  beforeAll(async () => {
    identities = await testIdentities();
    operator = identities.clients("operator");
    db = await testRedis("answer-back");
    tasks = await startTasks(db, logger, {
      env: { ...identities.env, TASKS_LEASE_MS: "2000", TASKS_RETRY_BASE_MS: "100", TASKS_RETRY_MAX_MS: "200" },
    });
    gateway = await startGateway(db, tasks.url, logger, identities.env);
    github = await FakeGitHub.start({ tokens: [GITHUB_TOKEN] });
    github.addIssue("octo", "repo", 7);
    const port = await freePort();
    githubUrl = `https://127.0.0.1:${port}`;
    githubService = startService("@hookmesh/github", {
      ...identities.env,
      GITHUB_PORT: String(port),
      GITHUB_HOST: "127.0.0.1",
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN,
      GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      LOG_LEVEL: "warn",
    });
    dir = mkdtempSync(join(tmpdir(), "hookmesh-answer-back-"));
  });

  afterEach(async () => {
    for (const worker of workers.splice(0)) {
      if (worker.exitCode === null && worker.signalCode === null) {
        worker.kill("SIGKILL");
        await once(worker, "exit");
      }
    }
  });

  afterAll(async () => {
    operator?.close();
    githubService?.kill("SIGTERM");
    if (githubService && githubService.exitCode === null) await once(githubService, "exit");
    await gateway?.close();
    await tasks?.close();
    await github?.close();
    await db?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  function startWorker(command: string): ChildProcess {
    const worker = startService("@hookmesh/agent", {
      ...identities.env,
      TASKS_URL: tasks.url,
      GITHUB_URL: githubUrl,
      AGENT_ID: `worker-${randomUUID().slice(0, 8)}`,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_RUNNER: "command",
      AGENT_COMMAND: command,
      AGENT_CONCURRENCY: "1",
      AGENT_WORKDIR: join(dir, "runs"),
      AGENT_PROGRESS_INTERVAL_MS: "0",
      HOOKMESH_DASHBOARD_URL: "https://hookmesh.example",
      LOG_LEVEL: "warn",
    });
    workers.push(worker);
    return worker;
  }

  async function mention(text: string): Promise<string> {
    const body = githubMention(text);
    // post waits for the gateway to forward what it acknowledged: the task is made behind the ack.
    const reply = await post(gateway.base, "github", body, githubHeaders(body));
    expect(reply.status).toBe(202);
    return reply.json.task_id as string;
  }

  async function task(id: string): Promise<Task> {
    return (await operator.client(TaskService, tasks.url, "tasks").getTask({ id })).task!;
  }

  const comments = (taskId: string) => [...github.comments.values()].filter((c) => String(c.body).includes(taskId));
  const creates = () =>
    github.apiRequests().filter((r) => r.method === "POST" && r.path === "/repos/octo/repo/issues/7/comments");

  it("acknowledges once, then edits the same comment into the answer", async () => {
    startWorker("echo 'the test is flaky because of a race'");
    const before = creates().length;
    const id = await mention("why is this test flaky?");
    await expect.poll(async () => (await task(id)).state, POLL).toBe(TaskState.SUCCEEDED);
    await expect.poll(() => comments(id).some((c) => String(c.body).includes("race")), POLL).toBe(true);
    expect(creates().length - before).toBe(1);
    const [comment] = comments(id);
    expect(String(comment!.body)).toContain("the test is flaky because of a race");
    expect(String(comment!.body)).toContain(`https://hookmesh.example/tasks/${id}`);
    const edits = github
      .apiRequests()
      .filter((r) => r.method === "PATCH" && r.path === `/repos/octo/repo/issues/comments/${String(comment!.id)}`);
    expect(edits.length).toBeGreaterThanOrEqual(1);
    expect(edits.every((r) => r.headers.authorization === `Bearer ${GITHUB_TOKEN}`)).toBe(true);
    // Every integration call, the final edit included, is in the task's timeline.
    const calls: string[] = [];
    for await (const { event } of operator.client(TaskService, tasks.url, "tasks").watchTask({ id })) {
      if (event?.kind.case === "toolCall") calls.push(`${event.kind.value.name} ${event.kind.value.detail}`);
    }
    expect(calls).toEqual([
      `github.CreateComment ${String(comment!.id)}`,
      `github.UpdateComment ${String(comment!.id)}`,
    ]);
  });

  it("still yields one acknowledgment and one answer when the worker is killed mid-run", async () => {
    const first = startWorker("sleep 2; echo 'answer after a crash'");
    const before = creates().length;
    const id = await mention("take your time");
    await expect.poll(() => comments(id).length, POLL).toBe(1);
    first.kill("SIGKILL");
    startWorker("sleep 2; echo 'answer after a crash'");
    await expect.poll(async () => (await task(id)).state, { ...POLL, timeout: 30_000 }).toBe(TaskState.SUCCEEDED);
    await expect.poll(() => comments(id).some((c) => String(c.body).includes("answer after a crash")), POLL).toBe(true);
    expect((await task(id)).attempt).toBe(2);
    expect(comments(id)).toHaveLength(1);
    expect(creates().length - before).toBe(1);
  }, 45_000);
});
