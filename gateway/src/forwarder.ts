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
/**
 * Batches submitted and not yet answered, at most: while tasks works on one, the next is read
 * and sent, so that neither process waits for the other (one at a time, the outbox drained at
 * one batch per round trip, and fell behind 1,000 webhooks a second).
 */
const IN_FLIGHT = 3;
/** How long tasks has for a batch before it is sent again (smaller). */
const SUBMIT_TIMEOUT_MS = 10_000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/**
 * Submits the outbox to the tasks service behind the acknowledgment, in batches (one
 * SubmitEvents call for what has accumulated since the last, up to three calls in flight),
 * oldest first. Every gateway process runs one, as a consumer of the outbox's consumer group,
 * so they share the work and each entry goes to one of them; an entry is acknowledged only
 * once tasks has it, and the entries of a forwarder that stopped are taken over once idle
 * (XAUTOCLAIM). While tasks is down the entries stay in the stream and the forwarder waits
 * with backoff, resuming the moment tasks' health turns SERVING. Submitting is idempotent, with
 * the task id the acknowledgment named, so a batch sent twice (a crash between submit and
 * acknowledge, a takeover of a slow forwarder's entries) is the same tasks.
 */
export class Forwarder {
  private readonly stopped = new AbortController();
  private running: Promise<void> | undefined;
  /**
   * Entries per call: halved when tasks does not answer a batch in time (a slow tasks service
   * would otherwise be sent the same large batch again and again), doubled back after each
   * one it answers.
   */
  private batch = MAX_BATCH;

  constructor(private readonly deps: ForwarderDeps) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const { logger } = this.deps;
    const { signal } = this.stopped;
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.catchUp(signal);
        failures = 0;
        await this.forwardNew(signal);
      } catch (err) {
        if (signal.aborted) return;
        const failure = ConnectError.from(err);
        if (failure.code === Code.DeadlineExceeded) this.batch = Math.max(1, Math.floor(this.batch / 2));
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
   * Forwards what is behind, one batch at a time: this forwarder's own pending entries first (a
   * batch that failed, or was in flight when its process stopped), then entries another
   * forwarder left idle. Reading its own entries resets their idle time, so that no other
   * forwarder takes over a batch this one still holds.
   */
  private async catchUp(signal: AbortSignal): Promise<void> {
    const { outbox, consumer } = this.deps;
    for (;;) {
      const own = await outbox.takeOwn(consumer, this.batch);
      const behind = own.length > 0 ? own : await outbox.claimIdle(consumer, this.batch, this.claimIdleMs);
      if (behind.length === 0) return;
      await this.send(behind, signal);
    }
  }

  /**
   * Forwards new entries as they come, up to IN_FLIGHT batches at once, and every `pollMs`
   * the entries of forwarders that stopped. Once a batch failed and the others in flight have
   * ended it throws, for the backoff: the failed batch's entries are still this forwarder's,
   * pending, and are sent again first.
   */
  private async forwardNew(signal: AbortSignal): Promise<void> {
    const { outbox, consumer } = this.deps;
    const pollMs = this.deps.pollMs ?? 1_000;
    const inFlight = new Set<Promise<void>>();
    let failed: { err: unknown } | undefined;
    let claimedAt = performance.now();
    while (!signal.aborted && failed === undefined) {
      if (inFlight.size >= IN_FLIGHT) {
        await Promise.race(inFlight);
        continue;
      }
      let entries: OutboxEntry[] = [];
      if (performance.now() - claimedAt >= pollMs) {
        claimedAt = performance.now();
        entries = await outbox.claimIdle(consumer, this.batch, this.claimIdleMs);
      }
      if (entries.length === 0) entries = await outbox.takeNew(consumer, this.batch);
      if (entries.length === 0) {
        await this.untilAddedOrAnswered(inFlight, pollMs, signal);
        continue;
      }
      const sending: Promise<void> = this.send(entries, signal).then(
        () => {
          this.batch = Math.min(MAX_BATCH, this.batch * 2);
        },
        (err: unknown) => {
          failed ??= { err };
        },
      );
      inFlight.add(sending);
      void sending.finally(() => inFlight.delete(sending));
    }
    await Promise.all(inFlight);
    if (failed !== undefined) throw failed.err;
  }

  /** Resolves when this process adds an entry, a batch in flight is answered, `ms` pass, or `signal` aborts. */
  private async untilAddedOrAnswered(inFlight: Set<Promise<void>>, ms: number, signal: AbortSignal): Promise<void> {
    const answered = new AbortController();
    try {
      await Promise.race([this.deps.outbox.nextAdd(ms, AbortSignal.any([signal, answered.signal])), ...inFlight]);
    } finally {
      answered.abort();
    }
  }

  /** One batch, in the trace of its first delivery (which its webhook request began), linked to the others'. */
  private send(entries: OutboxEntry[], signal: AbortSignal): Promise<void> {
    const [first, ...others] = entries.map((entry) => contextFromTraceparent(entry.event.traceContext));
    return inSpan(
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
  }

  private get claimIdleMs(): number {
    return this.deps.claimIdleMs ?? 30_000;
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
