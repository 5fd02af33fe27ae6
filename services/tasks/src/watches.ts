import type { Logger, RedisClient } from "@hookmesh/kit";
import { storeCall, TooManyWatchesError } from "./errors.js";

interface Channel {
  listeners: Set<() => void>;
  /** Settles when Redis confirmed the subscription. */
  subscribed: Promise<unknown>;
}

/**
 * Timeline signals for one process over one Redis connection: a task's channel (or the change
 * log's) is subscribed while at least one of this process's streams watches it, and each
 * message is fanned out to those streams' listeners. Pub/sub drops what is published while the
 * connection is down, so when it comes back every channel is subscribed again and then every
 * listener is woken, to read its timeline (or the log) anew.
 *
 * `subscriber` is this class's alone, created with `autoResubscribe: false`: resubscribing is
 * done here, so that the wake-up follows the confirmed subscriptions.
 */
export class TimelineSignals {
  private readonly channels = new Map<string, Channel>();

  constructor(
    private readonly subscriber: RedisClient,
    private readonly channelOf: (taskId: string) => string,
    private readonly logger: Logger,
  ) {
    subscriber.on("message", (channel: string) => this.wake(this.channels.get(channel)));
    subscriber.on("ready", () => void this.resubscribe());
    // A cluster's subscriber moves to another node by itself when its node goes, resubscribing
    // without a "ready": a node gone or come back is when a message may have been missed.
    subscriber.on("-node", () => this.wakeAll());
    subscriber.on("+node", () => this.wakeAll());
    // Outages are reported by the shared connection's readiness logging; these are its echo.
    subscriber.on("error", (err: Error) => logger.debug({ err: err.message }, "timeline subscriber error"));
  }

  /** Calls `wake` whenever the task's timeline grows, from when this resolves; the result stops it. */
  async listen(taskId: string, wake: () => void): Promise<() => void> {
    return this.listenTo(this.channelOf(taskId), wake);
  }

  /** Calls `wake` whenever something is published on channel `name`, from when this resolves; the result stops it. */
  async listenTo(name: string, wake: () => void): Promise<() => void> {
    let channel = this.channels.get(name);
    if (channel === undefined) {
      channel = { listeners: new Set(), subscribed: this.subscriber.subscribe(name) };
      this.channels.set(name, channel);
    }
    const joined = channel;
    joined.listeners.add(wake);
    const stop = () => {
      if (!joined.listeners.delete(wake) || joined.listeners.size > 0) return;
      if (this.channels.get(name) === joined) this.channels.delete(name);
      // A failed unsubscribe leaves a channel nobody listens to until the next reconnect, which starts clean.
      this.subscriber.unsubscribe(name).catch(() => {});
    };
    try {
      await storeCall(() => joined.subscribed);
    } catch (err) {
      // The next listener tries again instead of waiting on this failure.
      if (this.channels.get(name) === joined) this.channels.delete(name);
      joined.listeners.delete(wake);
      throw err;
    }
    return stop;
  }

  private async resubscribe(): Promise<void> {
    const names = [...this.channels.keys()];
    if (names.length === 0) return;
    try {
      await this.subscriber.subscribe(...names);
    } catch (err) {
      // The connection dropped again; its next "ready" comes back here.
      this.logger.debug({ err: (err as Error).message }, "timeline resubscribe failed");
      return;
    }
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const channel of this.channels.values()) this.wake(channel);
  }

  private wake(channel: Channel | undefined): void {
    for (const wake of channel?.listeners ?? []) wake();
  }
}

export interface WatchQuotaOptions {
  /** The method whose streams are counted, for the refusal's message. */
  method: string;
  /** Streams one caller may have open at once. */
  maxPerCaller: number;
  /** Streams this process serves at once, for all callers together. */
  maxTotal: number;
}

/**
 * How many streams of one method are open, per caller and in all: a stream holds a slot from its
 * start to its end, so no caller can hold more than its share of the process's listeners.
 */
export class WatchQuota {
  private readonly open = new Map<string, number>();
  private total = 0;

  constructor(private readonly options: WatchQuotaOptions) {}

  /** Takes a slot for `caller`, or throws TooManyWatchesError; the result gives it back (once). */
  admit(caller: string): () => void {
    const mine = this.open.get(caller) ?? 0;
    if (mine >= this.options.maxPerCaller) {
      throw new TooManyWatchesError(
        `at most ${this.options.maxPerCaller} ${this.options.method} streams per caller are open`,
      );
    }
    if (this.total >= this.options.maxTotal) {
      throw new TooManyWatchesError(
        `this server has its most ${this.options.method} streams (${this.options.maxTotal}) open`,
      );
    }
    this.open.set(caller, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.open.get(caller) ?? 1) - 1;
      if (left === 0) this.open.delete(caller);
      else this.open.set(caller, left);
    };
  }
}

/** A wake-up that is remembered until cleared, so a ring between a read and the wait counts. */
export class Doorbell {
  private rung = false;
  private answer: (() => void) | undefined;

  ring(): void {
    this.rung = true;
    this.answer?.();
  }

  clear(): void {
    this.rung = false;
  }

  /** Resolves when rung (at once if it was since the last clear), after `ms`, or on abort. */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.rung || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.answer = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.answer = done;
    });
  }
}
