import { setTimeout as sleep } from "node:timers/promises";
import type { Logger, RedisClient } from "@hookmesh/kit";
import { Job, Queue, Worker } from "bullmq";
import type { WorkBell } from "./work-bell.js";

export interface WorkQueueOptions {
  /** BullMQ's key prefix: under the tasks service's own prefix, so no other service reads it. */
  keyPrefix: string;
  /** How long a lease lasts unless extended. */
  leaseMs: number;
}

/**
 * A task's job as the queue gave it out (`next`) or as read ahead (`read`): ending its lease
 * with it (`finish`, `retryLater`) reads the job no more. No `job`: the job is gone.
 */
export interface QueuedJob {
  readonly taskId: string;
  readonly job: Job | undefined;
}

/** How often `requeue` looks whether the last attempt's job is gone. */
const REQUEUE_POLL_MS = 20;

/** Route priorities run from 0 to 1000, higher first; BullMQ's run from 1, lower first. */
const MAX_PRIORITY = 1000;
const QUEUE_NAME = "tasks";

/**
 * The durable queue of task ids, on BullMQ with manual fetching: a job is a task id, a lease
 * is a job lock whose token is the lease id, and BullMQ's stalled-job check returns the jobs
 * of workers that stopped heartbeating to the queue. State lives in the TaskStore; this only
 * decides what runs next. Whatever makes a task ready (queued, put back, its delay over, its
 * lease expired) rings `bell`, which wakes the waiting LeaseTasks calls of every replica.
 */
export class WorkQueue {
  private readonly queue: Queue;
  private readonly worker: Worker;

  /** `connection` must allow blocking commands (ioredis `maxRetriesPerRequest: null`). */
  constructor(
    connection: RedisClient,
    private readonly options: WorkQueueOptions,
    logger: Logger,
    private readonly bell: WorkBell,
  ) {
    const common = { connection, prefix: options.keyPrefix.replace(/:$/, "") };
    this.queue = new Queue(QUEUE_NAME, {
      ...common,
      defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
    });
    this.worker = new Worker(QUEUE_NAME, null, {
      ...common,
      autorun: false,
      lockDuration: options.leaseMs,
      // BullMQ marks a job stalled at one check and returns it at the next, so a dead worker's
      // task comes back about leaseMs + 2 × stalledInterval after its last heartbeat.
      stalledInterval: Math.max(250, Math.floor(options.leaseMs / 4)),
      // A lost lease is counted as an attempt by the engine, which decides when to give up.
      maxStalledCount: Number.MAX_SAFE_INTEGER,
    });
    // Without listeners BullMQ prints every failed reconnect to stderr; the Redis connection's
    // own readiness logging already says what an operator needs.
    const onError = (err: Error) => logger.debug({ err: err.message }, "work queue error");
    this.queue.on("error", onError);
    this.worker.on("error", onError);
    // Only the replica whose check ran sees this; the ring reaches every other one.
    this.worker.on("stalled", () => this.bell.ring());
  }

  /** Starts returning the jobs of expired leases to the queue. */
  async start(): Promise<void> {
    await this.worker.startStalledCheckTimer();
  }

  /** Queues a task (no-op if it is queued already), to run after `delayMs`. */
  async enqueue(taskId: string, priority: number, delayMs = 0): Promise<void> {
    await this.queue.add(QUEUE_NAME, {}, { jobId: taskId, priority: MAX_PRIORITY + 1 - priority, delay: delayMs });
    this.bell.ring(delayMs);
  }

  /**
   * Queues a task that ended, again (an operator's retry). Its last attempt's job may still be
   * held by that attempt's lease for a moment, since a task ends before its job does, and
   * queuing over a job that exists does nothing: this waits until the job is gone. A job whose
   * end never comes is returned to the queue by the stalled-job check once the lease has
   * expired, which runs the task all the same, so the wait lasts a lease at most.
   */
  async requeue(taskId: string, priority: number): Promise<void> {
    const deadline = Date.now() + this.options.leaseMs;
    while ((await this.queue.getJobState(taskId)) === "active" && Date.now() < deadline) {
      await sleep(REQUEUE_POLL_MS);
    }
    await this.enqueue(taskId, priority);
  }

  /** Queues tasks in one transaction (a task queued already stays as it is). */
  async enqueueAll(tasks: readonly { taskId: string; priority: number }[]): Promise<void> {
    await this.queue.addBulk(
      tasks.map(({ taskId, priority }) => ({
        name: QUEUE_NAME,
        data: {},
        opts: { jobId: taskId, priority: MAX_PRIORITY + 1 - priority },
      })),
    );
    if (tasks.length > 0) this.bell.ring();
  }

  async isQueued(taskId: string): Promise<boolean> {
    return (await this.queue.getJob(taskId)) !== undefined;
  }

  /** The next ready task's job, locked with `leaseId`, or undefined when none is ready. */
  async next(leaseId: string): Promise<QueuedJob | undefined> {
    const job = await this.worker.getNextJob(leaseId, { block: false });
    return job?.id === undefined ? undefined : { taskId: job.id, job };
  }

  /** A task's job, read ahead of ending its lease, alongside other reads. */
  async read(taskId: string): Promise<QueuedJob> {
    return { taskId, job: await Job.fromId(this.queue, taskId) };
  }

  /** Rings heard so far: read before `next`, then pass to `waitForWork`. */
  get rings(): number {
    return this.bell.heardSoFar;
  }

  /** Resolves when work may be ready (a ring since `since`), after `ms`, or when `signal` aborts. */
  waitForWork(since: number, ms: number, signal: AbortSignal): Promise<void> {
    return this.bell.wait(since, ms, signal);
  }

  /**
   * Extends a lease; false when `leaseId` no longer holds the task (or its job is gone). One
   * script, as BullMQ's own lock renewal does it, without reading the job first.
   */
  async extend(taskId: string, leaseId: string): Promise<boolean> {
    const failed = await this.worker.extendJobLocks([taskId], [leaseId], this.options.leaseMs);
    return failed.length === 0;
  }

  /** Ends a leased task's job: the job as read already, or the task's id to read it by. */
  async finish(of: QueuedJob | string, leaseId: string): Promise<void> {
    const job = await this.jobOf(of);
    await job?.moveToCompleted(null, leaseId, false);
  }

  /** Puts a leased task back to run again after `delayMs`: the job as read already, or the task's id. */
  async retryLater(of: QueuedJob | string, leaseId: string, delayMs: number): Promise<void> {
    const job = await this.jobOf(of);
    if (!job) return;
    await job.moveToDelayed(Date.now() + delayMs, leaseId);
    this.bell.ring(delayMs);
  }

  /** Drops a task that is waiting; false when it is leased (its lease must end first). */
  async removeWaiting(taskId: string): Promise<boolean> {
    if (!(await this.isQueued(taskId))) return true;
    // BullMQ refuses to remove a locked job, which settles the race with a lease being taken.
    return this.queue.remove(taskId).then(
      (removed) => removed === 1,
      () => false,
    );
  }

  /**
   * Tasks ready to run, by route priority (BullMQ counts only the priorities asked for, so the
   * ready tasks of any other, say of a rule since changed, are `other`), and tasks delayed (a
   * retry's backoff, a busy subject, a spent budget).
   */
  async depth(priorities: readonly number[]): Promise<{ ready: Map<number, number>; other: number; delayed: number }> {
    const [perPriority, counts] = await Promise.all([
      this.queue.getCountsPerPriority(priorities.map((priority) => MAX_PRIORITY + 1 - priority)),
      this.queue.getJobCounts("wait", "prioritized", "delayed"),
    ]);
    const ready = new Map(priorities.map((priority) => [priority, perPriority[MAX_PRIORITY + 1 - priority] ?? 0]));
    const counted = [...ready.values()].reduce((sum, n) => sum + n, 0);
    const total = (counts.wait ?? 0) + (counts.prioritized ?? 0);
    return { ready, other: Math.max(0, total - counted), delayed: counts.delayed ?? 0 };
  }

  private async jobOf(of: QueuedJob | string): Promise<Job | undefined> {
    return typeof of === "string" ? Job.fromId(this.queue, of) : of.job;
  }

  async close(): Promise<void> {
    this.bell.close();
    await this.worker.close();
    await this.queue.close();
  }
}
