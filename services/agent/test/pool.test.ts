import { rm } from "node:fs/promises";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createServiceMetrics } from "@hookmesh/kit";
import { memoryLogger, metricValue, parsePrometheusText } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OutputStream, RunOutcome, type TaskEvent, TaskStage } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { agentMetrics, type RunObserver } from "../src/metrics.js";
import { WorkerPool, type WorkerPoolConfig } from "../src/pool.js";
import { createRunners } from "../src/runners/index.js";
import { FakeTasks } from "./fake-tasks.js";
import { alive, descendants, profile, scratchDir, settings, waitFor } from "./helpers.js";

/** Each task's prompt is the shell script its agent runs. */
const AGENT_COMMAND = 'eval "$HOOKMESH_PROMPT"';

function outputs(events: TaskEvent[]): string[] {
  return events.flatMap((e) =>
    e.kind.case === "output" && e.kind.value.stream === OutputStream.STDOUT ? [e.kind.value.text] : [],
  );
}

describe("WorkerPool", () => {
  let tasks: FakeTasks;
  let workdirRoot: string;
  let pool: WorkerPool;
  let lines: () => string[];
  let drains: number;

  beforeEach(async () => {
    tasks = new FakeTasks();
    workdirRoot = await scratchDir("pool");
    drains = 0;
  });

  afterEach(async () => {
    await pool.drain(0);
    await rm(workdirRoot, { recursive: true, force: true });
  });

  function startPool(config: Partial<WorkerPoolConfig> = {}, observer?: RunObserver): WorkerPool {
    const log = memoryLogger("pool-test");
    lines = log.lines;
    pool = new WorkerPool({
      worker: tasks.client,
      runners: createRunners(settings({ agentCommand: AGENT_COMMAND, killGraceMs: 300 })),
      config: {
        workerId: "worker-1",
        concurrency: 2,
        defaultRunner: "command",
        maxRunTimeMs: 60_000,
        workdirRoot,
        workerEnv: { PATH: process.env.PATH },
        leaseWaitMs: 200,
        eventFlushMs: 50,
        ...config,
      },
      logger: log.logger,
      onDrain: () => drains++,
      ...(observer && { observer }),
    });
    pool.start();
    return pool;
  }

  it("leases a task, runs its agent, reports its events and completes it", async () => {
    tasks.add("t1", `echo hello; echo '{"hookmesh": 1, "answer": "hi", "cost_usd": 0.1}'`);
    startPool();
    await waitFor(() => tasks.ended() === 1);
    const [done] = tasks.completed;
    expect(done).toMatchObject({
      taskId: "t1",
      leaseId: "lease-t1",
      result: { outcome: RunOutcome.SUCCEEDED, exitCode: 0, answer: "hi", costUsd: 0.1 },
    });
    expect(durationMs(done!.result!.duration!)).toBeGreaterThan(0);
    const events = tasks.events("t1");
    expect(events.map((e) => e.kind.case)).toEqual(["stage", "output", "usage"]);
    expect(events[0]?.kind).toMatchObject({ case: "stage", value: { stage: TaskStage.STARTED } });
    expect(outputs(events)).toEqual(["hello"]);
    for (const event of events) expect(event.time).toBeDefined();
    expect(tasks.failed).toEqual([]);
    expect(tasks.leaseRequests[0]).toMatchObject({ maxTasks: 2 });
  });

  it("counts runs by route and outcome, their durations, cost and tokens, and its slots, for metrics", async () => {
    const usage = '{"hookmesh": 1, "answer": "hi", "cost_usd": 0.25, "input_tokens": 100, "output_tokens": 7}';
    tasks.add("t1", `echo '${usage}'`, { routeId: "github-mention" });
    tasks.add("t2", "exit 3", { routeId: "github-mention" });
    const metrics = createServiceMetrics("agent");
    startPool(
      {},
      agentMetrics(metrics, () => pool),
    );
    await waitFor(() => tasks.ended() === 2);

    const families = parsePrometheusText(await metrics.registry.metrics());
    const route = { route: "github-mention", service: "agent" };
    expect(metricValue(families, "hookmesh_agent_runs_total", { ...route, outcome: "succeeded" })).toBe(1);
    expect(metricValue(families, "hookmesh_agent_runs_total", { ...route, outcome: "agent_error" })).toBe(1);
    expect(metricValue(families, "hookmesh_agent_run_duration_seconds", route)).toBe(2);
    expect(metricValue(families, "hookmesh_agent_cost_usd_total", route)).toBe(0.25);
    expect(metricValue(families, "hookmesh_agent_tokens_total", { ...route, direction: "input" })).toBe(100);
    expect(metricValue(families, "hookmesh_agent_tokens_total", { ...route, direction: "output" })).toBe(7);
    expect(metricValue(families, "hookmesh_agent_slots", { state: "total" })).toBe(2);
    expect(metricValue(families, "hookmesh_agent_slots", { state: "busy" })).toBe(0);
  });

  it("runs at most `concurrency` tasks, leasing only for free slots", async () => {
    for (let i = 0; i < 5; i++) tasks.add(`t${i}`, "sleep 0.3");
    startPool({ concurrency: 2 });
    await waitFor(() => tasks.ended() === 5);
    expect(tasks.completed.map((c) => c.taskId).sort()).toEqual(["t0", "t1", "t2", "t3", "t4"]);
    expect(tasks.maxHeld).toBe(2);
    for (const request of tasks.leaseRequests) {
      expect(request.maxTasks).toBeGreaterThanOrEqual(1);
      expect(request.maxTasks + request.held).toBeLessThanOrEqual(2);
    }
  });

  it("heartbeats every heartbeat_interval while the agent runs", async () => {
    tasks.add("t1", "sleep 0.5", { heartbeatMs: 50 });
    startPool();
    await waitFor(() => tasks.ended() === 1);
    expect(tasks.heartbeats.length).toBeGreaterThanOrEqual(5);
    expect(tasks.heartbeats.every((h) => h.taskId === "t1" && h.leaseId === "lease-t1")).toBe(true);
    const count = tasks.heartbeats.length;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(tasks.heartbeats.length).toBe(count);
  });

  it("batches a chatty agent's events, in order, at most 50 a call", async () => {
    tasks.add("t1", "seq 1 120");
    startPool();
    await waitFor(() => tasks.ended() === 1);
    const reports = tasks.reports.filter((r) => r.taskId === "t1");
    expect(reports.every((r) => r.events.length <= 50)).toBe(true);
    expect(reports.some((r) => r.events.length === 50)).toBe(true);
    expect(reports.length).toBeLessThanOrEqual(5);
    expect(outputs(tasks.events("t1"))).toEqual(Array.from({ length: 120 }, (_, i) => String(i + 1)));
  });

  it("reports a quiet agent's output within the flush interval, before the run ends", async () => {
    tasks.add("t1", "echo early; sleep 0.5; echo late");
    startPool({ eventFlushMs: 100 });
    await waitFor(() => outputs(tasks.events("t1")).includes("early"));
    expect(tasks.ended()).toBe(0);
    await waitFor(() => tasks.ended() === 1);
    expect(outputs(tasks.events("t1"))).toEqual(["early", "late"]);
  });

  it.each([
    ["an agent that exits non-zero", "exit 3", {}, { outcome: RunOutcome.AGENT_ERROR, exitCode: 3 }, true],
    ["an agent that runs too long", "sleep 30", { maxRunTimeMs: 200 }, { outcome: RunOutcome.TIMED_OUT }, false],
    [
      "an agent over its cost cap",
      `echo '{"hookmesh": 1, "cost_usd": 3}'; sleep 30`,
      { maxCostUsd: 2 },
      { outcome: RunOutcome.COST_CAP, costUsd: 3, error: "cost cap $2.00 reached at $3.00" },
      false,
    ],
    [
      "an unknown runner",
      "true",
      { runner: "nope" },
      { outcome: RunOutcome.AGENT_ERROR, error: 'unknown runner "nope"; this worker runs command, claude' },
      false,
    ],
  ])("fails %s with the outcome and whether to retry", async (_, prompt, profileInit, result, retryable) => {
    tasks.add("t1", prompt, { profile: profile(profileInit) });
    startPool();
    await waitFor(() => tasks.ended() === 1);
    expect(tasks.completed).toEqual([]);
    expect(tasks.failed[0]).toMatchObject({ taskId: "t1", leaseId: "lease-t1", result, retryable });
  });

  it("stops the agent when a heartbeat says the task was canceled", async () => {
    tasks.add("t1", "sleep 30", { heartbeatMs: 50 });
    startPool();
    await waitFor(() => tasks.events("t1").length > 0);
    tasks.cancel.add("t1");
    const canceledAt = Date.now();
    await waitFor(() => tasks.ended() === 1);
    expect(Date.now() - canceledAt).toBeLessThan(2_000);
    expect(tasks.failed[0]).toMatchObject({ result: { outcome: RunOutcome.CANCELED }, retryable: false });
    expect(lines().some((l) => l.includes('"via":"heartbeat"'))).toBe(true);
  });

  it("stops the agent when an event report says the task was canceled", async () => {
    tasks.add("t1", "while true; do echo tick; sleep 0.05; done");
    startPool();
    await waitFor(() => outputs(tasks.events("t1")).length > 0);
    tasks.cancel.add("t1");
    await waitFor(() => tasks.ended() === 1);
    expect(tasks.failed[0]).toMatchObject({ result: { outcome: RunOutcome.CANCELED }, retryable: false });
    expect(lines().some((l) => l.includes('"via":"event report"'))).toBe(true);
  });

  it("stops the agent on a lost lease and reports nothing more about the task", async () => {
    tasks.add("t1", "sleep 30", { heartbeatMs: 50 });
    startPool();
    await waitFor(() => pool.status().runs[0]?.pid !== undefined);
    const bwrap = pool.status().runs[0]!.pid!;
    // The host's view of the run: bwrap and everything in its sandbox.
    await waitFor(() => descendants(bwrap).length >= 2);
    const processes = [bwrap, ...descendants(bwrap)];
    tasks.lost.add("t1");
    await waitFor(() => pool.status().runs.length === 0);
    await waitFor(() => alive(processes).length === 0, 2_000);
    expect(tasks.ended()).toBe(0);
    expect(lines().some((l) => l.includes("lease lost"))).toBe(true);
  });

  it("stops the agent once no heartbeat got through for a whole lease, and reports nothing", async () => {
    tasks.add("t1", "sleep 30", { heartbeatMs: 100 });
    tasks.unreachable.set("t1", Number.POSITIVE_INFINITY);
    startPool();
    await waitFor(() => pool.status().runs[0]?.pid !== undefined);
    await waitFor(() => pool.status().runs.length === 0, 5_000);
    expect(tasks.ended()).toBe(0);
    expect(lines().some((l) => l.includes("no heartbeat got through for a whole lease"))).toBe(true);
  });

  it("tries a failed heartbeat again before the lease runs out, and keeps the run", async () => {
    tasks.add("t1", "sleep 1", { heartbeatMs: 200 });
    tasks.unreachable.set("t1", 3);
    startPool();
    await waitFor(() => tasks.ended() === 1, 5_000);
    expect(tasks.completed).toHaveLength(1);
    expect(tasks.heartbeats.length).toBeGreaterThanOrEqual(4);
    expect(lines().filter((l) => l.includes("heartbeat failed; trying again"))).toHaveLength(3);
  });

  it("shows the runs in progress", async () => {
    tasks.add("t1", `echo '{"hookmesh": 1, "cost_usd": 0.25}'; sleep 30`);
    startPool();
    await waitFor(() => pool.status().runs[0]?.costUsd === 0.25);
    const status = pool.status();
    expect(status).toMatchObject({ workerId: "worker-1", concurrency: 2, draining: false });
    expect(status.runs).toEqual([
      {
        taskId: "t1",
        attempt: 1,
        runner: "command",
        startTime: expect.any(Number),
        pid: expect.any(Number),
        costUsd: 0.25,
      },
    ]);
  });

  it("drains: stops leasing, lets runs finish within the grace, then fails the rest as retryable", async () => {
    tasks.add("quick", "sleep 0.2; echo quick");
    tasks.add("slow", "sleep 30");
    startPool();
    await waitFor(() => pool.status().runs.length === 2);
    const drainedAt = Date.now();
    const drained = pool.drain(600);
    expect(pool.drain(600)).toBe(drained);
    expect(drains).toBe(1);
    expect(pool.status().draining).toBe(true);
    tasks.add("late", "echo never");
    await drained;
    expect(Date.now() - drainedAt).toBeGreaterThanOrEqual(600);
    expect(tasks.completed.map((c) => c.taskId)).toEqual(["quick"]);
    expect(tasks.failed).toMatchObject([
      { taskId: "slow", result: { outcome: RunOutcome.WORKER_SHUTDOWN }, retryable: true },
    ]);
    expect(tasks.leaseRequests.every((r) => r.time <= drainedAt)).toBe(true);
    expect(pool.status().runs).toEqual([]);
  });

  it("backs off while LeaseTasks fails, then leases again", async () => {
    tasks.leaseError = new ConnectError("tasks is down", Code.Unavailable);
    startPool({ leaseBackoffMs: 100, leaseBackoffMaxMs: 400 });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Without a backoff, an in-memory transport fails thousands of times a second.
    expect(tasks.leaseRequests.length).toBeGreaterThanOrEqual(3);
    expect(tasks.leaseRequests.length).toBeLessThanOrEqual(8);
    expect(lines().some((l) => l.includes("could not lease tasks") && l.includes('"code":"Unavailable"'))).toBe(true);
    tasks.leaseError = undefined;
    tasks.add("t1", "true");
    await waitFor(() => tasks.ended() === 1);
    expect(tasks.completed[0]?.taskId).toBe("t1");
  });
});
