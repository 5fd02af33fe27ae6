import { EventEmitter, once } from "node:events";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { RedisClient } from "@hookmesh/kit";
import { abortAfter } from "@hookmesh/kit";
import { type Event, EventSchema } from "../../gen/hookmesh/events/v1/event_pb.js";
import { storeCall } from "./store-call.js";

export interface OutboxEntry {
  /** The stream entry id: arrival order. */
  id: string;
  /** The delivery-log entry to update once the event is forwarded. */
  deliveryLogId: string;
  /** The duplicate-check claim to settle with the task id. */
  dedupKey: string;
  /** The task id the gateway's acknowledgment named (empty for entries that named none). */
  taskId: string;
  /** With its raw body, which the entry keeps in a field of its own. */
  event: Event;
}

const GROUP = "forwarder";
const EMPTY = new Uint8Array(0);

/** The outbox stream's key under a gateway's key prefix. */
export function outboxKey(keyPrefix: string): string {
  return `${keyPrefix}outbox`;
}

/**
 * An entry's event without its raw body, which the entry carries as `body` beside it: the
 * delivery log reads and moves a queued body from there (delivery-log.ts) without decoding
 * the event, and the acknowledgment encodes the event without copying the body into it.
 */
export function encodeEventWithoutBody(event: Event): Buffer {
  const withoutBody = event.rawBody.length === 0 ? event : create(EventSchema, { ...event, rawBody: EMPTY });
  return asBuffer(toBinary(EventSchema, withoutBody));
}

/** Bytes as a Buffer for ioredis (which writes other views as strings), without copying them. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Verified deliveries waiting for the tasks service: a Redis stream in the gateway's own
 * keys, read through a consumer group so that each entry goes to one forwarder, stays
 * pending until it is acknowledged, and is taken over from a forwarder that died. An entry's
 * fields: `event` (without its raw body), `body`, `log` (the delivery-log id), `dedup` (the
 * claim's key) and `task` (the task id the acknowledgment named).
 */
export class Outbox {
  private readonly added = new EventEmitter();
  private readonly stream: string;

  constructor(
    private readonly redis: RedisClient,
    options: { keyPrefix: string },
  ) {
    this.stream = outboxKey(options.keyPrefix);
  }

  /** The stream's key, for the intake script that appends to it. */
  get key(): string {
    return this.stream;
  }

  /** Wakes this process's forwarder: an entry was appended (by the intake script). */
  notifyAdded(): void {
    this.added.emit("added");
  }

  async init(): Promise<void> {
    await storeCall(() => this.redis.xgroup("CREATE", this.stream, GROUP, "0", "MKSTREAM")).catch((err: Error) => {
      if (!err.message.includes("BUSYGROUP")) throw err;
    });
  }

  /** Makes `event` durable here; resolves only once Redis has it. */
  async add(event: Event, deliveryLogId: string, dedupKey: string): Promise<string> {
    const id = await storeCall(() =>
      this.redis.xadd(
        this.stream,
        "*",
        "event",
        encodeEventWithoutBody(event),
        "body",
        asBuffer(event.rawBody),
        "log",
        deliveryLogId,
        "dedup",
        dedupKey,
      ),
    );
    this.added.emit("added");
    return id!;
  }

  /**
   * `consumer`'s own unacknowledged entries, oldest first: a batch that failed, or was in
   * flight when its process stopped. Reading them resets their idle time.
   */
  async takeOwn(consumer: string, count: number): Promise<OutboxEntry[]> {
    return this.inGroup(() => this.read(consumer, count, "0"));
  }

  /** Entries idle longer than `idleMs` at a consumer that stopped, oldest first, which `consumer` then holds. */
  async claimIdle(consumer: string, count: number, idleMs: number): Promise<OutboxEntry[]> {
    return this.inGroup(async () => {
      const [, claimed] = (await storeCall(() =>
        this.redis.callBuffer("XAUTOCLAIM", this.stream, GROUP, consumer, idleMs, "0-0", "COUNT", count),
      )) as [Buffer, [Buffer, Buffer[] | null][]];
      return claimed
        .filter((entry): entry is [Buffer, Buffer[]] => entry[1] !== null && entry[1].length > 0)
        .map(decode);
    });
  }

  /** Entries no consumer has taken yet, oldest first, which `consumer` then holds. */
  async takeNew(consumer: string, count: number): Promise<OutboxEntry[]> {
    return this.inGroup(() => this.read(consumer, count, ">"));
  }

  private async inGroup(read: () => Promise<OutboxEntry[]>): Promise<OutboxEntry[]> {
    try {
      return await read();
    } catch (err) {
      // A Redis that restarted without its data has lost the group (XADD brings back the
      // stream, not the group): create it again, from the start of whatever is there now.
      if (!(err instanceof Error) || !err.message.startsWith("NOGROUP")) throw err;
      await this.init();
      return read();
    }
  }

  async ack(...ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await storeCall(() =>
      this.redis
        .multi()
        .xack(this.stream, GROUP, ...ids)
        .xdel(this.stream, ...ids)
        .exec(),
    );
  }

  async length(): Promise<number> {
    return storeCall(() => this.redis.xlen(this.stream));
  }

  /** When the oldest entry was added (ms since the epoch, from its stream id), or undefined when empty. */
  async oldest(): Promise<number | undefined> {
    // Acknowledged entries are deleted, so the stream's first entry is the oldest still waiting.
    const [first] = await storeCall(() => this.redis.xrange(this.stream, "-", "+", "COUNT", 1));
    return first && Number(first[0].split("-")[0]);
  }

  /** Resolves when this process adds an entry, after `ms`, or when `signal` aborts. */
  async nextAdd(ms: number, signal: AbortSignal): Promise<void> {
    const wake = abortAfter(signal, ms);
    try {
      await once(this.added, "added", { signal: wake.signal }).catch(() => {});
    } finally {
      wake.clear();
    }
  }

  private async read(consumer: string, count: number, from: "0" | ">"): Promise<OutboxEntry[]> {
    const result = (await storeCall(() =>
      this.redis.xreadgroupBuffer("GROUP", GROUP, consumer, "COUNT", count, "STREAMS", this.stream, from),
    )) as [Buffer, [Buffer, Buffer[]][]][] | null;
    return (result?.[0]?.[1] ?? []).filter(([, fields]) => fields.length > 0).map(decode);
  }
}

function decode([id, fields]: [Buffer, Buffer[]]): OutboxEntry {
  const value = (name: string) => {
    const at = fields.findIndex((f, i) => i % 2 === 0 && f.toString() === name);
    return at < 0 ? undefined : fields[at + 1];
  };
  const event = fromBinary(EventSchema, value("event")!);
  // Entries appended before the body had a field of its own carry it in the event.
  const body = value("body");
  if (body !== undefined) event.rawBody = body;
  return {
    id: id.toString(),
    event,
    deliveryLogId: value("log")!.toString(),
    dedupKey: value("dedup")!.toString(),
    // Entries appended before the acknowledgment named its task have none.
    taskId: value("task")?.toString() ?? "",
  };
}
