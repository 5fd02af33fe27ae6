import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { contextFromTraceparent, inSpan, type Logger, TRACE_ATTRIBUTES } from "@hookmesh/kit";
import { trace } from "@opentelemetry/api";
import { DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { DeliveryDedup } from "./dedup.js";
import type { DeliveryLog } from "./delivery-log.js";
import type { Outbox, OutboxEntry } from "./outbox.js";
import type { TasksHealth } from "./tasks-health.js";

export interface ForwarderDeps {
  outbox: Outbox;
  tasks: Client<typeof TaskService>;
  deliveries: DeliveryLog;
  dedup: DeliveryDedup;
  tasksHealth: Pick<TasksHealth, "isServing" | "untilServing">;
  /** This forwarder's name in the outbox's consumer group; unique per gateway process. */
  consumer: string;
  logger: Logger;
  /** How long an entry may sit with a forwarder that stopped before another takes it over. */
  claimIdleMs?: number;
  /** How often to look for entries other gateway processes added. */
  pollMs?: number;
  submitTimeoutMs?: number;
}

/** The most entries submitted in one SubmitEvents call. */
const MAX_BATCH = 100;
/** How long tasks has for a batch before it is sent again (smaller). */
const SUBMIT_TIMEOUT_MS = 10_000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/**
 * Submits the outbox to the tasks service behind the acknowledgment, in batches (one
 * SubmitEvents call for what has accumulated since the last), oldest first. Every gateway
 * process runs one, as a consumer of the outbox's consumer group, so they share the work and
 * each entry goes to one of them; an entry is acknowledged only once tasks has it, and the
 * entries of a forwarder that stopped are taken over once idle (XAUTOCLAIM). While tasks is
 * down the entries stay in the stream and the forwarder waits with backoff, resuming the moment
 * tasks' health turns SERVING. Submitting is idempotent, with the task id the acknowledgment
 * named, so a batch sent twice (a crash between submit and acknowledge, a takeover of a slow
 * forwarder's entries) is the same tasks.
 */
export class Forwarder {
  private readonly stopped = new AbortController();
  private running: Promise<void> | undefined;

  constructor(private readonly deps: ForwarderDeps) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const { outbox, consumer, logger } = this.deps;
    const { signal } = this.stopped;
    let failures = 0;
    // Halved when tasks does not answer a batch in time (a slow tasks service would otherwise
    // be sent the same large batch again and again), doubled back after each one it answers.
    let batch = MAX_BATCH;
    while (!signal.aborted) {
      try {
        // Own pending entries first: a batch that failed is tried again, and reading it resets
        // its idle time, so that no other forwarder takes over a batch this one still holds.
        const entries = await outbox.take(consumer, batch, this.deps.claimIdleMs ?? 30_000);
        if (entries.length === 0) {
          await outbox.nextAdd(this.deps.pollMs ?? 1_000, signal);
          continue;
        }
        // In the trace of the batch's first delivery, which its webhook request began before
        // tasks could take it, linked to the others'.
        const [first, ...others] = entries.map((entry) => contextFromTraceparent(entry.event.traceContext));
        await inSpan(
          "gateway.forward",
          {
            parent: first!,
            attributes: {
              "hookmesh.batch_size": entries.length,
              ...(entries.length === 1 && { [TRACE_ATTRIBUTES.deliveryId]: entries[0]!.event.deliveryId }),
            },
            links: others.flatMap((other) => {
              const linked = trace.getSpanContext(other);
              return linked ? [{ context: linked }] : [];
            }),
          },
          () => this.forward(entries, signal),
        );
        failures = 0;
        batch = Math.min(MAX_BATCH, batch * 2);
      } catch (err) {
        if (signal.aborted) return;
        const failure = ConnectError.from(err);
        if (failure.code === Code.DeadlineExceeded) batch = Math.max(1, Math.floor(batch / 2));
        if (err instanceof ConnectError) {
          logger.debug({ code: Code[failure.code], attempt: failures + 1 }, "tasks not taking queued deliveries yet");
        } else {
          logger.warn({ err: err instanceof Error ? err.message : String(err) }, "outbox unavailable");
        }
        await this.pause(++failures, signal);
      }
    }
  }

  /**
   * Submits a batch; then records where each entry went (the delivery log, the duplicate
   * claim when its task is not the one the acknowledgment named) and acknowledges them all.
   * Throws when tasks did not take the batch: its entries stay pending here.
   */
  private async forward(entries: OutboxEntry[], signal: AbortSignal): Promise<void> {
    const { tasks, deliveries, dedup, outbox, logger } = this.deps;
    const { results } = await tasks.submitEvents(
      { items: entries.map((entry) => ({ event: entry.event, taskId: entry.taskId })) },
      { signal, timeoutMs: this.deps.submitTimeoutMs ?? SUBMIT_TIMEOUT_MS },
    );
    if (results.length !== entries.length) {
      throw new ConnectError(`${results.length} results for ${entries.length} items`, Code.Internal);
    }
    const outcomes: { id: string; status: DeliveryStatus; taskId: string }[] = [];
    const others: Promise<void>[] = [];
    for (const [i, entry] of entries.entries()) {
      const { task, duplicate, error } = results[i]!;
      if (error || !task) {
        // Retrying cannot fix it; keeping it would hold up every delivery behind it.
        others.push(
          deliveries.update(entry.deliveryLogId, (d) => {
            d.status = DeliveryStatus.REJECTED;
            d.taskId = "";
            d.reason = `tasks refused it: ${error}`;
          }),
        );
        logger.error({ deliveryId: entry.event.deliveryId, reason: error }, "tasks refused a queued delivery");
        continue;
      }
      const status = duplicate
        ? DeliveryStatus.DUPLICATE
        : task.state === TaskState.IGNORED
          ? DeliveryStatus.IGNORED
          : DeliveryStatus.ACCEPTED;
      outcomes.push({ id: entry.deliveryLogId, status, taskId: task.id });
      // The claim holds the task the acknowledgment named; a delivery tasks had already (a
      // redelivery past the duplicate window) has another.
      if (entry.dedupKey && task.id !== entry.taskId) others.push(dedup.settle(entry.dedupKey, task.id));
    }
    await Promise.all([deliveries.settleAll(outcomes), ...others]);
    await outbox.ack(...entries.map((entry) => entry.id));
    logger.debug({ entries: entries.length }, "forwarded queued deliveries");
  }

  /**
   * Exponential backoff with jitter; cut short when tasks' health turns SERVING. When tasks
   * says SERVING but calls still fail (an open breaker), only the backoff paces the retries.
   */
  private async pause(attempt: number, signal: AbortSignal): Promise<void> {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    const done = new AbortController();
    const until = AbortSignal.any([signal, done.signal]);
    const waits = [sleep(delay, undefined, { signal: until }).catch(() => {})];
    if (!this.deps.tasksHealth.isServing) waits.push(this.deps.tasksHealth.untilServing(until));
    await Promise.race(waits);
    done.abort();
  }
}
