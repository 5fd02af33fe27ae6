import { type ChildProcess, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLogger } from "@hookmesh/kit";
import { startService, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  ActorSchema,
  EventSchema,
  GitHubSubjectSchema,
  Provider,
  SubjectSchema,
} from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { RunOutcome, type Task, TaskStage, TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";

const fixture = fileURLToPath(new URL("./fixtures/lifecycle-agent.sh", import.meta.url));
const FINAL = new Set([TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED, TaskState.DEAD]);
const LEASE_MS = 2_000;
const MAX_RUN_MS = 3_000;

/**
 * The task engine and real worker processes together: the tasks service in-process on real
 * Redis, workers started as the agent package starts, and a shell agent that logs when
 * each run starts and ends.
 */
describe("task lifecycle with real workers and agents", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let client: Client<typeof TaskService>;
  let dir: string;
  let log: string;
  const workers = new Map<string, ChildProcess>();

  beforeAll(async () => {
    db = await testRedis("lifecycle");
    tasks = await startTasks(db, createLogger({ service: "tasks", level: "silent" }), {
      env: {
        TASKS_LEASE_MS: String(LEASE_MS),
        TASKS_MAX_ATTEMPTS: "2",
        TASKS_RETRY_BASE_MS: "100",
        TASKS_RETRY_MAX_MS: "200",
      },
    });
    // Outranks the default mention rule: lets the agent see the log path and bounds its run time.
    await tasks.routingRules.upsert(
      create(RouteSchema, {
        id: "lifecycle",
        provider: Provider.GITHUB,
        eventTypes: ["issue_comment"],
        trigger: { kind: { case: "mention", value: { mention: "" } } },
        priority: 900,
        profile: { runner: "command", maxRunTime: durationFromMs(MAX_RUN_MS), allowedEnv: ["HOOKMESH_TEST_LOG"] },
      }),
    );
    client = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url }));
    dir = mkdtempSync(join(tmpdir(), "hookmesh-lifecycle-"));
  });

  afterEach(async () => {
    for (const [id, worker] of workers) {
      if (worker.exitCode === null && worker.signalCode === null) {
        worker.kill("SIGKILL");
        await once(worker, "exit");
      }
      workers.delete(id);
    }
    // Agents of killed workers are orphans in their own process groups.
    for (const run of runs()) killGroup(run.pgid);
  });

  afterAll(async () => {
    await tasks?.close();
    await db?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  function startWorker(concurrency = 1): string {
    const id = `worker-${randomUUID().slice(0, 8)}`;
    const worker = startService("@hookmesh/agent", {
      // Cleartext on loopback, as the tasks service here: this test is about leases and runs;
      // the answer-back tests run workers under the defaults.
      HOOKMESH_INSECURE: "1",
      TASKS_URL: tasks.url,
      AGENT_ID: id,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_RUNNER: "command",
      AGENT_COMMAND: fixture,
      AGENT_CONCURRENCY: String(concurrency),
      AGENT_KILL_GRACE_MS: "300",
      AGENT_WORKDIR: join(dir, "runs"),
      SHUTDOWN_GRACE_MS: "1000",
      HOOKMESH_TEST_LOG: log,
      // Unsandboxed: this test reads, on the host, the log its agent writes outside its run
      // directory and the host process groups it names, which a sandbox exists to prevent;
      // services/agent/test/sandbox.test.ts covers runs in the sandbox.
      AGENT_SANDBOX: "off",
      LOG_LEVEL: "warn",
    });
    workers.set(id, worker);
    return id;
  }

  function newLog(): void {
    log = join(dir, `${randomUUID()}.log`);
    writeFileSync(log, "");
  }

  interface Run {
    kind: "start" | "end";
    taskId: string;
    pgid: number;
    ns: bigint;
  }

  function runs(): Run[] {
    if (!log) return [];
    return readFileSync(log, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => {
        const [kind, taskId, pgid, ns] = line.split(" ");
        return { kind: kind as Run["kind"], taskId: taskId!, pgid: Number(pgid), ns: BigInt(ns!) };
      });
  }

  async function submit(text: string, subject = `github:octo/repo#${Math.floor(Math.random() * 1e9)}`): Promise<Task> {
    const event = create(EventSchema, {
      provider: Provider.GITHUB,
      deliveryId: randomUUID(),
      eventType: "issue_comment",
      action: "created",
      actor: create(ActorSchema, { id: "1", login: "octocat", association: "OWNER" }),
      subject: create(SubjectSchema, {
        key: subject,
        ref: { case: "github", value: create(GitHubSubjectSchema, { owner: "octo", repo: "repo" }) },
      }),
      text: `@hookmesh ${text}`,
    });
    const { task } = await client.submitEvent({ event });
    expect(task?.state).toBe(TaskState.QUEUED);
    return task!;
  }

  /** The task once `done` holds for it; fails after `timeoutMs` naming the state it is still in. */
  function until(id: string, done: (task: Task) => boolean, timeoutMs = 20_000): Promise<Task> {
    return vi.waitFor(
      async () => {
        const { task } = await client.getTask({ id });
        if (!done(task!)) throw new Error(`task ${id} is still ${TaskState[task!.state]}`);
        return task!;
      },
      { timeout: timeoutMs, interval: 50 },
    );
  }

  const final = (id: string, timeoutMs?: number) => until(id, (t) => FINAL.has(t.state), timeoutMs);

  async function timeline(id: string) {
    const events = [];
    for await (const { event } of client.watchTask({ id })) events.push(event!);
    return events;
  }

  it("runs an agent process, streams its output into the timeline and stores its answer", async () => {
    newLog();
    startWorker();
    const task = await submit("say hello");
    const done = await final(task.id);
    expect(done.state).toBe(TaskState.SUCCEEDED);
    expect(done.result).toMatchObject({
      answer: `done ${task.id}`,
      exitCode: 0,
      costUsd: 0.01,
      outcome: RunOutcome.SUCCEEDED,
    });
    expect(done.result?.duration).toBeDefined();
    const events = await timeline(task.id);
    const stages = events.flatMap((e) => (e.kind.case === "stage" ? [e.kind.value.stage] : []));
    expect(stages).toEqual(expect.arrayContaining([TaskStage.QUEUED, TaskStage.LEASED, TaskStage.COMPLETED]));
    expect(
      events.some((e) => e.kind.case === "output" && e.kind.value.text === `working on ${task.id}` && e.attempt === 1),
    ).toBe(true);
    expect(events.some((e) => e.kind.case === "usage" && e.kind.value.costUsd === 0.01)).toBe(true);
  });

  it("retries a failing agent, then dead-letters the task", async () => {
    newLog();
    startWorker();
    const task = await submit("fail");
    const dead = await final(task.id);
    expect(dead).toMatchObject({ state: TaskState.DEAD, attempt: 2, result: { outcome: RunOutcome.AGENT_ERROR } });
    expect(runs().filter((r) => r.kind === "start" && r.taskId === task.id)).toHaveLength(2);
    const { tasks: listed } = await client.listTasks({ state: TaskState.DEAD });
    expect(listed.map((t) => t.id)).toContain(task.id);
  });

  it("times out a hanging agent once, without a retry, and leaves none of its processes behind", async () => {
    newLog();
    startWorker();
    const task = await submit("hang");
    const failed = await final(task.id, 15_000);
    expect(failed).toMatchObject({ state: TaskState.FAILED, attempt: 1, result: { outcome: RunOutcome.TIMED_OUT } });
    expect(runs().filter((r) => r.kind === "start" && r.taskId === task.id)).toHaveLength(1);
    for (const run of runs().filter((r) => r.kind === "start")) expect(groupAlive(run.pgid)).toBe(false);
  });

  it("cancels a running agent within seconds", async () => {
    newLog();
    startWorker();
    const task = await submit("hang");
    await until(task.id, () => runs().some((r) => r.kind === "start" && r.taskId === task.id));
    const asked = Date.now();
    await client.cancelTask({ id: task.id, reason: "test" });
    const canceled = await final(task.id);
    expect(canceled.state).toBe(TaskState.CANCELED);
    expect(Date.now() - asked).toBeLessThan(5_000);
    const [run] = runs().filter((r) => r.kind === "start" && r.taskId === task.id);
    expect(groupAlive(run!.pgid)).toBe(false);
  });

  it("reruns the task of a worker killed with SIGKILL on another worker, and succeeds exactly once", async () => {
    newLog();
    const first = startWorker();
    const task = await submit("sleep=2");
    const running = await until(task.id, (t) => t.state === TaskState.RUNNING);
    expect(running.workerId).toBe(first);
    startWorker();
    workers.get(first)!.kill("SIGKILL");
    const done = await final(task.id, 20_000);
    expect(done.state).toBe(TaskState.SUCCEEDED);
    expect(done.attempt).toBe(2);
    expect(done.workerId).toBe("");
    expect(done.transitions.filter((t) => t.state === TaskState.SUCCEEDED)).toHaveLength(1);
    const stages = (await timeline(task.id)).flatMap((e) => (e.kind.case === "stage" ? [e.kind.value.stage] : []));
    expect(stages.filter((s) => s === TaskStage.LEASE_EXPIRED)).toHaveLength(1);
    expect(stages.filter((s) => s === TaskStage.COMPLETED)).toHaveLength(1);
  });

  it("runs 500 tasks over 3 workers: each once, never twice at a time, one at a time per subject", {
    timeout: 120_000,
  }, async () => {
    newLog();
    for (let i = 0; i < 3; i++) startWorker(4);
    const subjects = Array.from({ length: 50 }, (_, i) => `github:octo/repo#${i + 1}`);
    const submitted = await Promise.all(
      Array.from({ length: 500 }, (_, i) => submit(`sleep=0.0${i % 5}`, subjects[i % subjects.length])),
    );
    const subjectOf = new Map(submitted.map((t, i) => [t.id, subjects[i % subjects.length]!]));
    for (const task of submitted) expect((await final(task.id, 90_000)).state).toBe(TaskState.SUCCEEDED);

    const log = runs();
    const starts = log.filter((r) => r.kind === "start");
    const ends = log.filter((r) => r.kind === "end");
    expect(new Set(starts.map((r) => r.taskId)).size).toBe(500);
    expect(starts).toHaveLength(500);
    expect(ends).toHaveLength(500);
    const intervals = starts.map((s) => ({ ...s, until: ends.find((e) => e.taskId === s.taskId)!.ns }));
    const bySubject = new Map<string, typeof intervals>();
    for (const run of intervals) {
      const subject = subjectOf.get(run.taskId)!;
      bySubject.set(subject, [...(bySubject.get(subject) ?? []), run]);
    }
    for (const runsOfSubject of bySubject.values()) {
      const sorted = runsOfSubject.toSorted((a, b) => (a.ns < b.ns ? -1 : 1));
      for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.ns).toBeGreaterThan(sorted[i - 1]!.until);
    }
  });
});

/**
 * True while a process of the group is alive. Zombies do not count: killed agents' children are
 * reparented to PID 1, which in some sandboxes never reaps them.
 */
function groupAlive(pgid: number): boolean {
  const processes = execFileSync("ps", ["-eo", "pgid=,stat="], { encoding: "utf8" });
  return processes.split("\n").some((line) => {
    const [group, stat] = line.trim().split(/\s+/);
    return Number(group) === pgid && stat !== undefined && !stat.startsWith("Z");
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // Already gone.
  }
}
