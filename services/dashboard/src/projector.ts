import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import { TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskChange, TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { Database } from "./db.js";
import type { Notifier } from "./notifier.js";
import { insertEvent, lastEventId, upsertTask } from "./read-model.js";

export interface ProjectorOptions {
  db: Database;
  tasks: Client<typeof TaskService>;
  notifier: Notifier;
  logger: Logger;
  /** This replica's name in the lease; unique per process. */
  holder: string;
  /** How long the lease lasts unless renewed (renewed every third of it). */
  leaseMs: number;
  /** Reconnect delays: exponential from `initialMs` to `maxMs`, with full jitter. */
  backoff?: { initialMs: number; maxMs: number };
  /** In a resynchronization, how long a task's timeline stream may stay quiet before it is taken as complete. */
  timelineIdleMs?: number;
}

/** Changes applied in one transaction at most. */
const MAX_BATCH = 500;

/**
 * The stream's changes in batches: each batch is a change and those that had already arrived
 * behind it (up to `max`), so a live stream applies each change as it comes and a catch-up
 * applies many per transaction.
 */
async function* batches(
  stream: AsyncIterable<{ change?: TaskChange | undefined }>,
  max: number,
): AsyncGenerator<TaskChange[]> {
  const iterator = stream[Symbol.asyncIterator]();
  // A read still pending when the consumer gives up rejects once the stream is aborted: no one
  // awaits it then, and that is no error.
  const read = () => {
    const promise = iterator.next();
    promise.catch(() => {});
    return promise;
  };
  let next = read();
  for (;;) {
    const first = await next;
    if (first.done) return;
    const batch = first.value.change ? [first.value.change] : [];
    next = read();
    let ended = false;
    while (batch.length < max) {
      // Whatever the transport has already received settles before a macrotask runs.
      const ready = await Promise.race([next, new Promise<"wait">((resolve) => setImmediate(resolve, "wait"))]);
      if (ready === "wait") break;
      if (ready.done) {
        ended = true;
        break;
      }
      if (ready.value.change) batch.push(ready.value.change);
      next = read();
    }
    if (batch.length > 0) yield batch;
    if (ended) return;
  }
}

/** The lease was taken over (or could not be renewed): this replica stops projecting. */
class LeaseLostError extends Error {
  override name = "LeaseLostError";
}

/**
 * Keeps the read model up to date from TaskService.WatchChanges. One replica projects at a
 * time: it holds a lease row, renews it while it streams, and every change is applied in a
 * transaction that first checks (and locks) the lease, with the cursor stored in that same
 * transaction; so a change is applied at least once, and applying it again changes nothing
 * (tasks are upserted newest-wins, events inserted once by their id). A stream that ends or
 * fails is reopened from the stored cursor after a backoff; a cursor that fell out of the
 * tasks service's log (`missed`) is recovered by listing every task again.
 */
export class Projector {
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  private readonly backoff: { initialMs: number; maxMs: number };

  constructor(private readonly options: ProjectorOptions) {
    this.backoff = options.backoff ?? { initialMs: 500, maxMs: 30_000 };
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Stops streaming and gives the lease up, so that another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
    await this.options.db
      .query("UPDATE projector SET holder = NULL, lease_expire_time = NULL WHERE id = 1 AND holder = $1::text", [
        this.options.holder,
      ])
      .catch(() => {});
  }

  private async run(): Promise<void> {
    const { logger, leaseMs } = this.options;
    const stop = this.stopping.signal;
    let failures = 0;
    let leader = false;
    while (!stop.aborted) {
      const held = await this.acquireLease().catch((err: unknown) => {
        logger.warn({ err }, "cannot reach the read model's database to take the projector lease");
        return false;
      });
      if (held !== leader) {
        leader = held;
        logger.info({ holder: this.options.holder }, held ? "projecting task changes" : "another replica projects");
      }
      if (!held) {
        await sleep(leaseMs / 3, undefined, { signal: stop }).catch(() => {});
        continue;
      }
      const stream = new AbortController();
      const onStop = () => stream.abort();
      stop.addEventListener("abort", onStop);
      const renewal = setInterval(() => {
        this.acquireLease().then(
          (renewed) => {
            if (!renewed) stream.abort(new LeaseLostError("the projector lease was taken over"));
          },
          (err: unknown) => stream.abort(err),
        );
      }, leaseMs / 3);
      try {
        await this.consume(stream.signal, () => {
          failures = 0;
        });
      } catch (err) {
        if (stop.aborted) break;
        const reason = stream.signal.aborted ? stream.signal.reason : err;
        if (reason instanceof LeaseLostError || err instanceof LeaseLostError) {
          logger.warn("projector lease lost; another replica projects");
          leader = false;
          continue;
        }
        logger.warn(
          { error: reason instanceof Error ? reason.message : String(reason), failures: failures + 1 },
          "task change stream failed; reconnecting",
        );
      } finally {
        clearInterval(renewal);
        stop.removeEventListener("abort", onStop);
        // Whatever ended this attempt, its stream ends with it.
        stream.abort();
      }
      failures++;
      const delay = Math.random() * Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** (failures - 1));
      await sleep(delay, undefined, { signal: stop }).catch(() => {});
    }
  }

  /** Takes the lease, or renews it; false when another replica holds it. */
  private async acquireLease(): Promise<boolean> {
    const rows = await this.options.db.query(
      `UPDATE projector SET holder = $1::text, lease_expire_time = now() + $2::float8 * interval '1 millisecond'
       WHERE id = 1 AND (holder IS NULL OR holder = $1::text OR lease_expire_time < now()) RETURNING holder`,
      [this.options.holder, this.options.leaseMs],
    );
    return rows.length === 1;
  }

  private async consume(signal: AbortSignal, onProgress: () => void): Promise<void> {
    const [state] = await this.options.db.query<{ cursor: string }>("SELECT cursor FROM projector WHERE id = 1");
    // No deadline: the stream lasts as long as this replica projects.
    const changes = this.options.tasks.watchChanges({ afterCursor: state?.cursor ?? "" }, { signal, timeoutMs: 0 });
    for await (const batch of batches(changes, MAX_BATCH)) {
      // A gap is filled before the change after it is applied.
      const gap = batch.findIndex((change) => change.missed);
      if (gap > 0) await this.applyAll(batch.slice(0, gap));
      if (gap >= 0) await this.resynchronize(signal);
      await this.applyAll(gap > 0 ? batch.slice(gap) : batch);
      onProgress();
    }
    // The server ended the stream (it is shutting down): reconnect like after a failure.
    throw new ConnectError("the task change stream ended", Code.Unavailable);
  }

  /** Applies one change and stores its cursor, in one transaction under the lease. */
  apply(change: TaskChange): Promise<void> {
    return this.applyAll([change]);
  }

  /**
   * Applies changes in order and stores the last one's cursor, in one transaction under the
   * lease: a catch-up of thousands of changes commits a batch at a time, not one by one.
   */
  async applyAll(changes: readonly TaskChange[]): Promise<void> {
    const last = changes.at(-1);
    if (!last) return;
    const { db, holder, notifier } = this.options;
    const taskIds = [...new Set(changes.map((change) => change.taskId))];
    await db.transaction(async (tx) => {
      const lease = await tx.query(
        "SELECT 1 FROM projector WHERE id = 1 AND holder = $1::text AND lease_expire_time > now() FOR UPDATE",
        [holder],
      );
      if (lease.length === 0) throw new LeaseLostError("the projector lease expired");
      for (const change of changes) {
        if (change.task) await upsertTask(tx, change.task);
        if (change.event) await insertEvent(tx, change.taskId, change.event, change.task);
      }
      await tx.query("UPDATE projector SET cursor = $1::text WHERE id = 1", [last.cursor]);
      // Other replicas' watches learn of it at commit.
      if (db.kind === "postgres") {
        for (const taskId of taskIds)
          await tx.query("SELECT pg_notify($1::text, $2::text)", [notifier.channel, taskId]);
      }
    });
    for (const taskId of taskIds) notifier.publish(taskId);
  }

  /**
   * Lists every task the tasks service still holds, stores each record, and fills in each
   * timeline from the last event the read model has (TaskService.WatchTask, read until the task's
   * stream ends or stays quiet: a running task's stream never ends, and what follows comes
   * through the change feed anyway).
   */
  private async resynchronize(signal: AbortSignal): Promise<void> {
    const { db, tasks, logger, notifier } = this.options;
    logger.warn("the change log no longer holds the stored cursor; resynchronizing from the task list");
    let pageToken = "";
    let count = 0;
    do {
      const page = await tasks.listTasks({ pageSize: 500, pageToken, view: TaskView.BASIC }, { signal });
      for (const task of page.tasks) {
        await upsertTask(db, task);
        await this.fillTimeline(task.id, signal);
        notifier.publish(task.id);
        count++;
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    logger.info({ tasks: count }, "resynchronized");
  }

  private async fillTimeline(taskId: string, signal: AbortSignal): Promise<void> {
    const { db, tasks } = this.options;
    const idleMs = this.options.timelineIdleMs ?? 1_000;
    const quiet = new AbortController();
    const both = AbortSignal.any([signal, quiet.signal]);
    let timer = setTimeout(() => quiet.abort(), idleMs);
    try {
      const stream = tasks.watchTask(
        { id: taskId, afterEventId: await lastEventId(db, taskId) },
        { signal: both, timeoutMs: 0 },
      );
      for await (const { event } of stream) {
        clearTimeout(timer);
        if (event) await insertEvent(db, taskId, event);
        timer = setTimeout(() => quiet.abort(), idleMs);
      }
    } catch (err) {
      if (signal.aborted) throw err;
      // Quiet, or the task is gone (retention): what the read model has is what there is.
      if (!quiet.signal.aborted && !(err instanceof ConnectError && err.code === Code.NotFound)) throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
