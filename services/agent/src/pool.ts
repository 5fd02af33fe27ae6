import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import type { Lease, WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { type Clock, systemClock } from "./agent-run.js";
import { LeasedRun, type LeasedRunSettings } from "./leased-run.js";
import type { RunObserver } from "./metrics.js";
import type { ReplierFactory } from "./replies/replier.js";
import type { Runners } from "./runners/index.js";
import type { Checkouts } from "./workspace/checkout.js";
import type { Publisher } from "./workspace/publish.js";

export interface WorkerPoolConfig extends Omit<LeasedRunSettings, "eventFlushMs" | "eventBatchSize"> {
  workerId: string;
  /** Tasks run at once. */
  concurrency: number;
  /** How long one LeaseTasks call waits for work (long poll). Default 10s. */
  leaseWaitMs?: number;
  /** Longest an agent event waits before it is reported. Default 250ms. */
  eventFlushMs?: number;
  /** Events per ReportEvents call. Default 50. */
  eventBatchSize?: number;
  /** Delay after the first failed LeaseTasks; it doubles per failure up to `leaseBackoffMaxMs`. Default 500ms. */
  leaseBackoffMs?: number;
  /** Longest delay between failed LeaseTasks calls. Default 15s. */
  leaseBackoffMaxMs?: number;
}

export interface WorkerPoolDeps {
  worker: Client<typeof WorkerService>;
  runners: Runners;
  config: WorkerPoolConfig;
  logger: Logger;
  clock?: Clock;
  /** Answers each task where its event came from; nothing is posted without it. */
  replies?: ReplierFactory;
  /** Checks out the repositories tasks name; without it such tasks fail. */
  checkouts?: Checkouts;
  /** Publishes the changes of successful runs on a repository. */
  publisher?: Publisher;
  /** Told how each run ended, for metrics. */
  observer?: RunObserver;
  /** Called once, when a drain starts: the worker stops taking work (health goes NOT_SERVING). */
  onDrain?: () => void;
}

/** One run in progress, as operators see it. */
export interface RunInfo {
  taskId: string;
  attempt: number;
  runner: string;
  startTime: number;
  pid: number | undefined;
  costUsd: number;
}

export interface PoolStatus {
  workerId: string;
  concurrency: number;
  draining: boolean;
  runs: RunInfo[];
}

/** Beyond the long poll's own wait, for the round trip. */
const LEASE_CALL_MARGIN_MS = 5_000;

/**
 * A worker's task slots. Leases work from the tasks service only while a slot is free, and
 * asks for no more tasks than there are free slots, so a busy worker leaves the queue to
 * others; backs off while the tasks service is failing.
 */
export class WorkerPool {
  private readonly active = new Map<LeasedRun, Promise<void>>();
  private readonly stopLeasing = new AbortController();
  private readonly clock: Clock;
  private leasing: Promise<void> | undefined;
  private drained: Promise<void> | undefined;
  /** Wakes the lease loop while it waits for a free slot. */
  private wake: (() => void) | undefined;

  constructor(private readonly deps: WorkerPoolDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  /** Starts leasing. */
  start(): void {
    this.leasing ??= this.leaseLoop();
  }

  status(): PoolStatus {
    return {
      workerId: this.deps.config.workerId,
      concurrency: this.deps.config.concurrency,
      draining: this.drained !== undefined,
      runs: [...this.active.keys()].map((run) => ({
        taskId: run.task.id,
        attempt: run.task.attempt,
        runner: run.runnerName,
        startTime: run.startTime,
        pid: run.pid,
        costUsd: run.costUsd,
      })),
    };
  }

  /**
   * Stops leasing; runs in progress get `graceMs` to finish, then are stopped and failed as
   * retryable. Resolves once every run's result is reported. Draining twice is harmless.
   */
  drain(graceMs: number): Promise<void> {
    this.drained ??= this.drainRuns(graceMs);
    return this.drained;
  }

  private async drainRuns(graceMs: number): Promise<void> {
    this.deps.onDrain?.();
    this.stopLeasing.abort();
    this.wake?.();
    await this.leasing;
    const runs = [...this.active];
    this.deps.logger.info({ runs: runs.length, graceMs }, "draining");
    const deadline = setTimeout(() => {
      for (const run of this.active.keys()) run.stop("shutdown");
    }, graceMs);
    await Promise.all(runs.map(([, finished]) => finished));
    clearTimeout(deadline);
  }

  private async leaseLoop(): Promise<void> {
    const { config, logger } = this.deps;
    const signal = this.stopLeasing.signal;
    const waitMs = config.leaseWaitMs ?? 10_000;
    let failures = 0;
    while (!signal.aborted) {
      const free = config.concurrency - this.active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      try {
        const { leases } = await this.deps.worker.leaseTasks(
          { workerId: config.workerId, maxTasks: free, wait: durationFromMs(waitMs) },
          { signal, timeoutMs: waitMs + LEASE_CALL_MARGIN_MS },
        );
        failures = 0;
        for (const lease of leases) this.startRun(lease);
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        const delayMs = Math.round(this.backoffMs(failures));
        const error = ConnectError.from(err);
        logger.warn({ code: Code[error.code], error: error.rawMessage, delayMs }, "could not lease tasks; retrying");
        await sleep(delayMs, undefined, { signal }).catch(() => {});
      }
    }
  }

  /** Half fixed, half random: workers that failed together do not come back together, nor at once. */
  private backoffMs(failures: number): number {
    const { leaseBackoffMs = 500, leaseBackoffMaxMs = 15_000 } = this.deps.config;
    const cap = Math.min(leaseBackoffMaxMs, leaseBackoffMs * 2 ** (failures - 1));
    return cap / 2 + (Math.random() * cap) / 2;
  }

  private startRun(lease: Lease): void {
    const { task } = lease;
    if (task === undefined) {
      this.deps.logger.error({ leaseId: lease.leaseId }, "lease without a task; left to expire");
      return;
    }
    const { config } = this.deps;
    const run = new LeasedRun(
      { ...lease, task },
      {
        worker: this.deps.worker,
        runners: this.deps.runners,
        settings: { ...config, eventFlushMs: config.eventFlushMs ?? 250, eventBatchSize: config.eventBatchSize ?? 50 },
        clock: this.clock,
        logger: this.deps.logger,
        ...(this.deps.replies && { replies: this.deps.replies }),
        ...(this.deps.checkouts && { checkouts: this.deps.checkouts }),
        ...(this.deps.publisher && { publisher: this.deps.publisher }),
        ...(this.deps.observer && { observer: this.deps.observer }),
      },
    );
    const finished = run.execute().finally(() => {
      this.active.delete(run);
      this.wake?.();
    });
    this.active.set(run, finished);
  }
}
