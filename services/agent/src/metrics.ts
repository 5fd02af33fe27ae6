import { durationMs } from "@bufbuild/protobuf/wkt";
import { Counter, Gauge, Histogram, type ServiceMetrics } from "@hookmesh/kit";
import { RunOutcome, type Task, type TaskResult } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { WorkerPool } from "./pool.js";

/** What a worker tells its metrics about each run. */
export interface RunObserver {
  /** A run ended with `result`; `leaseLost` when its lease was lost, so the result went to nobody. */
  ended(task: Task, result: TaskResult, leaseLost: boolean): void;
}

/** Seconds: agent runs take from seconds to the longest profile's run time (an hour or so). */
const RUN_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];

/**
 * The agent's own metrics on its registry: runs by route and outcome, their durations, cost
 * and tokens by route, and the pool's busy and total slots, read at scrape time.
 */
export function agentMetrics(metrics: ServiceMetrics, pool: () => WorkerPool): RunObserver {
  const registers = [metrics.registry];
  const runs = new Counter({
    name: "hookmesh_agent_runs_total",
    help: "Agent runs ended, by routing rule and outcome (succeeded, agent_error, timed_out, cost_cap, canceled, worker_shutdown, lease_lost).",
    labelNames: ["route", "outcome"],
    registers,
  });
  const duration = new Histogram({
    name: "hookmesh_agent_run_duration_seconds",
    help: "Time an agent run took, by routing rule and outcome.",
    labelNames: ["route", "outcome"],
    buckets: RUN_BUCKETS,
    registers,
  });
  const cost = new Counter({
    name: "hookmesh_agent_cost_usd_total",
    help: "What agent runs cost in US dollars, as the agents reported, by routing rule.",
    labelNames: ["route"],
    registers,
  });
  const tokens = new Counter({
    name: "hookmesh_agent_tokens_total",
    help: "Tokens agent runs used, by routing rule and direction (input, output).",
    labelNames: ["route", "direction"],
    registers,
  });
  new Gauge({
    name: "hookmesh_agent_slots",
    help: "The worker's task slots, busy (a run in progress) or total.",
    labelNames: ["state"],
    registers,
    collect() {
      const status = pool().status();
      this.set({ state: "busy" }, status.runs.length);
      this.set({ state: "total" }, status.concurrency);
    },
  });
  return {
    ended(task, result, leaseLost) {
      const route = task.routeId || "none";
      const outcome = leaseLost ? "lease_lost" : RunOutcome[result.outcome].toLowerCase();
      runs.inc({ route, outcome });
      if (result.duration) duration.observe({ route, outcome }, durationMs(result.duration) / 1000);
      if (result.costUsd > 0) cost.inc({ route }, result.costUsd);
      if (result.inputTokens > 0n) tokens.inc({ route, direction: "input" }, Number(result.inputTokens));
      if (result.outputTokens > 0n) tokens.inc({ route, direction: "output" }, Number(result.outputTokens));
    },
  };
}
