import { randomInt } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Redis } from "ioredis";
import { v7 as uuidv7 } from "uuid";
import type { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Delivery, DeliverySchema, type DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { storeCall } from "./store-call.js";

export class DeliveryNotFoundError extends Error {
  override name = "DeliveryNotFoundError";
  constructor(readonly id: string) {
    super(`delivery ${id} not found`);
  }
}

export class InvalidDeliveryPageTokenError extends Error {
  override name = "InvalidDeliveryPageTokenError";
  constructor() {
    super("page_token is invalid or was issued for other filters");
  }
}

export type NewDelivery = Omit<
  MessageInitShape<typeof DeliverySchema>,
  "$typeName" | "id" | "receiveTime" | "headers" | "rawBody" | "rawBodyTruncated"
> & {
  receivedAt: Date;
  headers: IncomingHttpHeaders;
  rawBody?: Buffer;
  /** Header names to redact beyond those the log always redacts (a custom webhook's signature header). */
  redact?: readonly string[];
};

export interface DeliveryFilter {
  provider?: Provider;
  status?: DeliveryStatus;
}

/** Bodies of refused requests are kept only this far: forged traffic must not fill Redis. */
export const REFUSED_BODY_BYTES = 64 * 1024;
const SCAN_BATCH = 200;
const SENSITIVE_HEADER = /signature|authorization|cookie|token|secret|api-key/i;

/**
 * Every delivery the gateway saw, for `retentionMs`: protobuf binary under `delivery:{id}`
 * (expiring with the retention) and a lexicographic index of ids, which are UUIDv7 and so
 * sort by arrival. The index is trimmed of expired ids as new deliveries come in.
 */
export class DeliveryLog {
  /** The newest id's millisecond and sequence: ids of one millisecond count up from it. */
  private last = { msecs: -1, seq: 0 };

  constructor(
    private readonly redis: Redis,
    private readonly options: { keyPrefix: string; retentionMs: number },
  ) {}

  async record(entry: NewDelivery, keepWholeBody: boolean): Promise<Delivery> {
    const { receivedAt, headers, rawBody, redact, ...fields } = entry;
    const body = rawBody ?? Buffer.alloc(0);
    const truncated = !keepWholeBody && body.length > REFUSED_BODY_BYTES;
    const delivery = create(DeliverySchema, {
      ...fields,
      id: this.nextId(receivedAt.getTime()),
      receiveTime: timestampFromDate(receivedAt),
      headers: redactHeaders(headers, redact),
      rawBody: truncated ? body.subarray(0, REFUSED_BODY_BYTES) : body,
      rawBodyTruncated: truncated,
    });
    const oldest = uuidv7({ msecs: receivedAt.getTime() - this.options.retentionMs, random: new Uint8Array(16) });
    await storeCall(() =>
      this.redis
        .multi()
        .set(this.key(delivery.id), Buffer.from(toBinary(DeliverySchema, delivery)), "PX", this.options.retentionMs)
        .zadd(this.indexKey, 0, delivery.id)
        .zremrangebylex(this.indexKey, "-", `(${oldest}`)
        .exec(),
    );
    return delivery;
  }

  /** Changes a recorded delivery (a queued one forwarded, a redelivery counted); a no-op once expired. */
  async update(id: string, change: (delivery: Delivery) => void): Promise<void> {
    const bytes = await storeCall(() => this.redis.getBuffer(this.key(id)));
    if (bytes === null) return;
    const delivery = fromBinary(DeliverySchema, bytes);
    change(delivery);
    await storeCall(() => this.redis.set(this.key(id), Buffer.from(toBinary(DeliverySchema, delivery)), "KEEPTTL"));
  }

  async get(id: string): Promise<Delivery> {
    const bytes = await storeCall(() => this.redis.getBuffer(this.key(id)));
    if (bytes === null) throw new DeliveryNotFoundError(id);
    return fromBinary(DeliverySchema, bytes);
  }

  /** A page of deliveries, newest first, without bodies. */
  async list(
    pageSize: number,
    filter: DeliveryFilter,
    pageToken?: string,
  ): Promise<{ deliveries: Delivery[]; nextPageToken: string }> {
    const filterKey = `${filter.provider ?? 0}/${filter.status ?? 0}`;
    let after = pageToken ? decodePageToken(pageToken, filterKey) : undefined;
    const deliveries: Delivery[] = [];
    for (;;) {
      const ids = await storeCall(() =>
        this.redis.zrevrangebylex(this.indexKey, after === undefined ? "+" : `(${after}`, "-", "LIMIT", 0, SCAN_BATCH),
      );
      if (ids.length === 0) break;
      const values = await storeCall(() => this.redis.mgetBuffer(...ids.map((id) => this.key(id))));
      for (const [i, bytes] of values.entries()) {
        after = ids[i];
        if (bytes === null) continue;
        const delivery = fromBinary(DeliverySchema, bytes);
        if (
          (filter.provider && delivery.provider !== filter.provider) ||
          (filter.status && delivery.status !== filter.status)
        )
          continue;
        delivery.rawBody = new Uint8Array(0);
        deliveries.push(delivery);
        if (deliveries.length === pageSize) {
          return { deliveries, nextPageToken: encodePageToken(delivery.id, filterKey) };
        }
      }
      if (ids.length < SCAN_BATCH) break;
    }
    return { deliveries, nextPageToken: "" };
  }

  /**
   * A UUIDv7 for a delivery received at `msecs`. uuid's v7 with an explicit time draws a random
   * sequence, so two deliveries of one millisecond would sort at random; counting the sequence
   * up within the millisecond keeps them in arrival order.
   */
  private nextId(msecs: number): string {
    if (msecs === this.last.msecs) {
      this.last.seq += 1;
    } else if (msecs > this.last.msecs) {
      // Random, but low enough that counting up never runs out of the 32 bits.
      this.last = { msecs, seq: randomInt(2 ** 30) };
    } else {
      // Recorded after a later delivery (a slow submit): its own place in time, by its receive time.
      return uuidv7({ msecs });
    }
    return uuidv7({ msecs, seq: this.last.seq });
  }

  private get indexKey(): string {
    return `${this.options.keyPrefix}deliveries`;
  }

  private key(id: string): string {
    return `${this.options.keyPrefix}delivery:${id}`;
  }
}

/**
 * Headers as recorded: one string each, credentials and signatures replaced, and so are the
 * headers named in `extra` (any case).
 */
export function redactHeaders(headers: IncomingHttpHeaders, extra: readonly string[] = []): Record<string, string> {
  const recorded: Record<string, string> = {};
  const sensitive = new Set(extra.map((name) => name.toLowerCase()));
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const redacted = SENSITIVE_HEADER.test(name) || sensitive.has(name.toLowerCase());
    recorded[name] = redacted ? "[redacted]" : Array.isArray(value) ? value.join(", ") : value;
  }
  return recorded;
}

function encodePageToken(lastId: string, filterKey: string): string {
  return Buffer.from(`${filterKey}|${lastId}`).toString("base64url");
}

function decodePageToken(token: string, filterKey: string): string {
  const [tokenFilter, lastId] = Buffer.from(token, "base64url").toString().split("|");
  if (tokenFilter !== filterKey || !lastId) throw new InvalidDeliveryPageTokenError();
  return lastId;
}
