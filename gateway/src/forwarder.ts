import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { contextFromTraceparent, inSpan, type Logger, TRACE_ATTRIBUTES } from "@hookmesh/kit";
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

const BATCH = 50;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/**
 * Drains the outbox into the tasks service, oldest first: an entry is acknowledged only
 * once tasks has it, and the next is not tried before. While tasks is down the forwarder
 * waits with backoff, and resumes the moment tasks' health turns SERVING. Submitting is
 * idempotent, so an entry sent twice (a crash between submit and acknowledge) is one task.
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
    while (!signal.aborted) {
      try {
        const entries = await outbox.take(consumer, BATCH, this.deps.claimIdleMs ?? 30_000);
        if (entries.length === 0) {
          await outbox.nextAdd(this.deps.pollMs ?? 1_000, signal);
          continue;
        }
        for (const entry of entries) {
          if (signal.aborted) return;
          // In the delivery's trace, which the webhook request began before tasks could take it.
          await inSpan(
            "gateway.forward",
            {
              parent: contextFromTraceparent(entry.event.traceContext),
              attributes: { [TRACE_ATTRIBUTES.deliveryId]: entry.event.deliveryId },
            },
            () => this.forward(entry, signal),
          );
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) return;
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, "outbox unavailable");
        await this.pause(++failures, signal);
      }
    }
  }

  /** Sends one entry until tasks takes it (or refuses it for good), or the forwarder stops. */
  private async forward(entry: OutboxEntry, signal: AbortSignal): Promise<void> {
    const { tasks, deliveries, dedup, outbox, logger } = this.deps;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const { task, duplicate } = await tasks.submitEvent(
          { event: entry.event },
          { signal, timeoutMs: this.deps.submitTimeoutMs ?? 5_000 },
        );
        const status = duplicate
          ? DeliveryStatus.DUPLICATE
          : task!.state === TaskState.IGNORED
            ? DeliveryStatus.IGNORED
            : DeliveryStatus.ACCEPTED;
        await deliveries.update(entry.deliveryLogId, (d) => {
          d.status = status;
          d.taskId = task!.id;
        });
        if (entry.dedupKey) await dedup.settle(entry.dedupKey, task!.id);
        await outbox.ack(entry.id);
        logger.info(
          { deliveryId: entry.event.deliveryId, taskId: task!.id, attempts: attempt },
          "forwarded queued delivery",
        );
        return;
      } catch (err) {
        if (signal.aborted) return;
        const failure = ConnectError.from(err);
        if (failure.code === Code.InvalidArgument) {
          // Retrying cannot fix it; keeping it would block every delivery behind it.
          await deliveries.update(entry.deliveryLogId, (d) => {
            d.status = DeliveryStatus.REJECTED;
            d.reason = `tasks refused it: ${failure.rawMessage}`;
          });
          await outbox.ack(entry.id);
          logger.error(
            { deliveryId: entry.event.deliveryId, reason: failure.rawMessage },
            "tasks refused a queued delivery",
          );
          return;
        }
        logger.debug({ attempt, code: Code[failure.code] }, "tasks not taking queued deliveries yet");
        await this.pause(attempt, signal);
      }
    }
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
