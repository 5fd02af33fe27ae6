import type { Logger } from "@hookmesh/kit";
import type { TaskEvent } from "../../../gen/hookmesh/tasks/v1/task_pb.js";

export interface EventReporterOptions {
  /** Sends one batch, oldest first; a rejection keeps the batch for the next try. */
  send(batch: TaskEvent[]): Promise<void>;
  /** Longest an event waits before it is sent. */
  flushIntervalMs: number;
  /** Events per call; a full batch is sent at once. */
  batchSize: number;
  logger: Logger;
}

/** While the tasks service is unreachable, events wait up to this many; older ones are dropped. */
const MAX_PENDING_EVENTS = 1_000;
/** After a failed send, the next try waits this long instead of the flush interval. */
const RETRY_DELAY_MS = 2_000;

/**
 * Batches a run's events into ReportEvents calls: one call at a time, in order, sent when a
 * batch is full or the oldest event has waited the flush interval, so that a chatty agent
 * costs a few calls a second and a quiet one shows up within the interval.
 */
export class EventReporter {
  private pending: TaskEvent[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: EventReporterOptions) {}

  add(event: TaskEvent): void {
    if (this.closed) return;
    this.pending.push(event);
    this.dropOverflow();
    if (this.pending.length >= this.options.batchSize) void this.flush();
    else this.schedule(this.options.flushIntervalMs);
  }

  /** Sends what is pending; once closed, nothing more is taken. Logs what could not be sent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    if (this.pending.length > 0) await this.flush();
    const lost = this.dropped + this.pending.length;
    if (lost > 0) this.options.logger.warn({ lost }, "could not report some events of the run");
    this.pending = [];
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sending ??= this.sendPending().finally(() => (this.sending = undefined));
    return this.sending;
  }

  private async sendPending(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.options.batchSize);
      try {
        await this.options.send(batch);
      } catch (err) {
        this.options.logger.warn({ err, events: batch.length }, "could not report events; retrying");
        this.pending.unshift(...batch);
        this.dropOverflow();
        if (!this.closed) this.schedule(RETRY_DELAY_MS);
        return;
      }
    }
  }

  private schedule(delayMs: number): void {
    this.timer ??= setTimeout(() => void this.flush(), delayMs);
  }

  private dropOverflow(): void {
    const excess = this.pending.length - MAX_PENDING_EVENTS;
    if (excess <= 0) return;
    this.pending.splice(0, excess);
    this.dropped += excess;
  }
}
