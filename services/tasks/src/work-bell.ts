import { EventEmitter, once } from "node:events";
import type { RedisClient } from "@hookmesh/kit";
import { abortAfter, type Logger } from "@hookmesh/kit";

/** Subscribes a channel and calls `wake` on each message (and after a reconnect); resolves with its stop. */
export type Listen = (channel: string, wake: () => void) => Promise<() => void>;

/**
 * Tells every tasks replica's waiting LeaseTasks calls that work may be ready, so that a task
 * queued by one replica is leased at once by a worker waiting on another. A ring is a Redis
 * PUBLISH on one channel; this replica's own waiters are woken without the round trip. Work
 * that becomes ready later (a retry's backoff, a busy subject's wait) rings when it is due,
 * from the replica that delayed it.
 *
 * Pub/sub drops what is published while a subscriber is disconnected (and a replica that dies
 * takes its timers with it), so waiters still look every `fallbackMs` on their own.
 */
export class WorkBell {
  private readonly rung = new EventEmitter();
  private readonly timers = new Set<NodeJS.Timeout>();
  private rings = 0;
  private stopListening: (() => void) | undefined;

  constructor(
    private readonly publisher: RedisClient,
    private readonly channel: string,
    private readonly logger: Logger,
  ) {
    this.rung.setMaxListeners(0);
  }

  /** Hears the rings of every replica from when this resolves. */
  async listen(listen: Listen): Promise<void> {
    this.stopListening = await listen(this.channel, () => this.heard());
  }

  /** Rings every replica now, or once `delayMs` has passed. */
  ring(delayMs = 0): void {
    if (delayMs > 0) {
      // A little after the due time: BullMQ compares the delay with its own clock reading.
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.ring();
      }, delayMs + DUE_MARGIN_MS);
      timer.unref();
      this.timers.add(timer);
      return;
    }
    this.heard();
    this.publisher.publish(this.channel, "").catch((err: Error) => {
      // The other replicas' waiters look again within their fallback.
      this.logger.debug({ err: err.message }, "could not ring the work bell");
    });
  }

  /** Counts rings heard; pass a reading to `wait` so that a ring in between is not missed. */
  get heardSoFar(): number {
    return this.rings;
  }

  /** Resolves at the next ring after reading `since` (at once if one came already), after `ms`, or on abort. */
  async wait(since: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.rings !== since || signal.aborted) return;
    // Not AbortSignal.any over AbortSignal.timeout, whose timer can be collected (see abortAfter):
    // a lease call would then wait for work forever, past its deadline.
    const wake = abortAfter(signal, Math.max(1, ms));
    try {
      await once(this.rung, "ring", { signal: wake.signal }).catch(() => {});
    } finally {
      wake.clear();
    }
  }

  /** Stops hearing and drops the rings still due. */
  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.stopListening?.();
  }

  private heard(): void {
    this.rings++;
    this.rung.emit("ring");
  }
}

const DUE_MARGIN_MS = 5;
