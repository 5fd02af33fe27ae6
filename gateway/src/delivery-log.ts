import { randomInt } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type RedisClient, runScript, runScriptBuffer } from "@hookmesh/kit";
import { v7 as uuidv7 } from "uuid";
import type { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Delivery, DeliverySchema, DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { asBuffer, outboxKey } from "./outbox.js";
import { RandomPool } from "./random-pool.js";
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
  "$typeName" | "id" | "receiveTime" | "headers" | "rawBody" | "rawBodyTruncated" | "bodySize"
> & {
  receivedAt: Date;
  headers: IncomingHttpHeaders;
  rawBody?: Buffer;
  bodySize: number;
  /** Header names to redact beyond those the log always redacts (a custom webhook's signature header). */
  redact?: readonly string[];
};

export interface DeliveryFilter {
  provider?: Provider;
  status?: DeliveryStatus;
}

export interface DeliveryLogOptions {
  keyPrefix: string;
  retentionMs: number;
  /** Full entries (with body) kept per route: deliveries that made, or may make, a task. */
  maxPerRoute: number;
  /** Brief entries kept per route: refused requests, duplicates and answers at the edge. */
  maxBriefPerRoute: number;
}

const SCAN_BATCH = 200;
const DAY_MS = 24 * 60 * 60 * 1000;
const SENSITIVE_HEADER = /signature|authorization|cookie|token|secret|api-key/i;
/**
 * The entries a sender can multiply without making anything new: refused requests (anyone),
 * duplicates (a replayed capture; a provider's retries) and answers at the edge (a replayed
 * ping). They are logged briefly: no body (a refused body proves nothing; a duplicate's is
 * its first delivery's), a few headers, under a cap of their own; none can be redelivered.
 */
const BRIEF: ReadonlySet<DeliveryStatus> = new Set([
  DeliveryStatus.REJECTED,
  DeliveryStatus.DUPLICATE,
  DeliveryStatus.ANSWERED,
]);

/**
 * The only headers kept of a brief entry: what tells a misconfigured sender or a probe apart
 * (type, size, client, the provider's event and delivery ids), none of them a credential,
 * each cut short, so that an entry costs the log a bounded few hundred bytes however large
 * the request's headers were.
 */
const BRIEF_HEADERS: ReadonlySet<string> = new Set([
  "content-type",
  "content-length",
  "transfer-encoding",
  "user-agent",
  "x-github-event",
  "x-github-delivery",
  "x-github-hook-id",
  "x-slack-request-timestamp",
  "x-slack-retry-num",
  "x-atlassian-webhook-identifier",
  "sentry-hook-resource",
  "request-id",
]);
const BRIEF_HEADER_CHARS = 128;

/**
 * Writes an entry and its index entries, drops entries past the retention from both indexes,
 * then the oldest entries of the route's index beyond its cap (their records and their ids in
 * the global index), and counts a refusal: atomically, so that concurrent gateways never
 * leave a route over its cap. The dropped records' keys are made from `recordPrefix` in the
 * script, which a single Redis (the gateway's store) allows.
 *
 * A Lua function, so that the intake script (intake.ts) records in the same step as it appends.
 */
export const RECORD_LUA = `
local function record(key, indexKey, routeIndexKey, id, bytes, retentionMs, oldest, cap, recordPrefix)
  redis.call('SET', key, bytes, 'PX', retentionMs)
  redis.call('ZADD', indexKey, 0, id)
  redis.call('ZADD', routeIndexKey, 0, id)
  redis.call('PEXPIRE', routeIndexKey, retentionMs)
  local stale = '(' .. oldest
  redis.call('ZREMRANGEBYLEX', indexKey, '-', stale)
  redis.call('ZREMRANGEBYLEX', routeIndexKey, '-', stale)
  local excess = redis.call('ZCARD', routeIndexKey) - tonumber(cap)
  if excess > 0 then
    local dropped = redis.call('ZPOPMIN', routeIndexKey, excess)
    for i = 1, #dropped, 2 do
      redis.call('DEL', recordPrefix .. dropped[i])
      redis.call('ZREM', indexKey, dropped[i])
    end
  end
end
`;

const RECORD_SCRIPT = `${RECORD_LUA}
record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if KEYS[4] then
  redis.call('HINCRBY', KEYS[4], ARGV[7], 1)
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
end
`;

/**
 * The raw body a queued record's outbox entry carries (a record written by the intake has
 * none of its own): `queued` names the entry's stream id, and the entry holds the body in its
 * `body` field. False when there is none (forwarded, or never queued that way).
 */
const QUEUED_BODY_LUA = `
local function queuedBody(stream, queued)
  local at = redis.call('GET', queued)
  if not at then return false end
  local entry = redis.call('XRANGE', stream, at, at)[1]
  if not entry then return false end
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'body' then return fields[i + 1] end
  end
  return false
end
`;

/** A record and, when its body is still in the outbox, that body. KEYS: record, queued, outbox stream. */
const GET_SCRIPT = `${QUEUED_BODY_LUA}
local bytes = redis.call('GET', KEYS[1])
if not bytes then return false end
return {bytes, queuedBody(KEYS[3], KEYS[2])}
`;

/**
 * Appends ARGV[i] to the record KEYS[2i] where it still exists (APPEND keeps its expiry), with
 * the raw body (protobuf field 12, raw_body) from the outbox entry its queued key KEYS[2i+1]
 * names, which it then deletes: the body moves from the outbox entry into the record, within
 * Redis, before the entry is acknowledged. KEYS[1]: the outbox stream.
 */
const SETTLE_SCRIPT = `${QUEUED_BODY_LUA}
local function varint(n)
  local bytes = ''
  while n >= 128 do
    bytes = bytes .. string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  return bytes .. string.char(n)
end
for i = 1, #ARGV do
  local record, queued = KEYS[2 * i], KEYS[2 * i + 1]
  local fields = ARGV[i]
  local body = queuedBody(KEYS[1], queued)
  if redis.call('EXISTS', record) == 1 then
    if body then fields = fields .. string.char(98) .. varint(#body) .. body end
    redis.call('APPEND', record, fields)
  end
  redis.call('DEL', queued)
end
`;

/** An entry ready to be written: the keys and arguments of RECORD_LUA's `record`, in its order. */
export interface PreparedDelivery {
  /** The entry as recorded; without its raw body when that is queued in the outbox. */
  delivery: Delivery;
  keys: [key: string, indexKey: string, routeIndexKey: string];
  args: [id: string, bytes: Buffer, retentionMs: number, oldest: string, cap: number, recordPrefix: string];
}

/** Refusals of one route with one HTTP status, within the retention. */
export interface RejectionTally {
  route: string;
  httpStatus: number;
  count: bigint;
}

/**
 * Every delivery the gateway saw, for `retentionMs` and up to a cap per route: protobuf
 * binary under `delivery:{id}` (expiring with the retention), a lexicographic index of ids,
 * which are UUIDv7 and so sort by arrival, and one index per route and kind (full or brief)
 * that the caps are enforced on. Refused requests are also counted per route and HTTP status
 * by UTC day.
 *
 * A queued delivery's raw body is kept once: the intake writes it into the outbox entry only,
 * and `delivery-queued:{id}` names that entry; forwarding it (`settleAll`) moves the body into
 * the record. Reading a record (`get`) takes the body from wherever it is at that moment.
 */
export class DeliveryLog {
  private readonly ids = new OrderedUuids();

  constructor(
    private readonly redis: RedisClient,
    private readonly options: DeliveryLogOptions,
  ) {}

  async record(entry: NewDelivery): Promise<Delivery> {
    const { delivery, keys, args } = this.prepare(entry);
    const { receivedAt } = entry;
    const allKeys: string[] = [...keys];
    const allArgs: Array<string | number | Buffer> = [...args];
    if (delivery.status === DeliveryStatus.REJECTED) {
      // Each refusal extends its day's tally: it outlives the last entry it counted.
      allKeys.push(this.rejectionsKey(receivedAt.getTime()));
      allArgs.push(`${delivery.httpStatus}:${delivery.route}`, this.options.retentionMs + DAY_MS);
    }
    await storeCall(() => runScript(this.redis, RECORD_SCRIPT, allKeys, allArgs));
    return delivery;
  }

  /**
   * The entry for `entry`, with its id, and what RECORD_LUA's `record` writes it with. With
   * `bodyQueued`, the record leaves out the raw body, which the caller writes into the outbox
   * entry that `queuedKey(id)` names.
   */
  prepare(entry: NewDelivery, { bodyQueued = false } = {}): PreparedDelivery {
    const { receivedAt, headers, rawBody, redact, ...fields } = entry;
    const brief = BRIEF.has(fields.status ?? DeliveryStatus.UNSPECIFIED);
    const delivery = create(DeliverySchema, {
      ...fields,
      bodySize: BigInt(fields.bodySize),
      id: this.ids.next(receivedAt.getTime()),
      receiveTime: timestampFromDate(receivedAt),
      headers: brief ? briefHeaders(headers) : redactHeaders(headers, redact),
      rawBody: brief || bodyQueued ? EMPTY : (rawBody ?? EMPTY),
    });
    const { retentionMs, keyPrefix } = this.options;
    const oldest = uuidv7({ msecs: receivedAt.getTime() - retentionMs, random: ZERO_RANDOM });
    return {
      delivery,
      keys: [this.key(delivery.id), this.indexKey, this.routeIndexKey(fields.route ?? "", brief)],
      args: [
        delivery.id,
        asBuffer(toBinary(DeliverySchema, delivery)),
        retentionMs,
        oldest,
        brief ? this.options.maxBriefPerRoute : this.options.maxPerRoute,
        `${keyPrefix}delivery:`,
      ],
    };
  }

  /** Refusals per route and HTTP status over the retention, most first. */
  async rejections(now = new Date()): Promise<RejectionTally[]> {
    const days = Math.ceil(this.options.retentionMs / DAY_MS) + 1;
    const keys = Array.from({ length: days }, (_, i) => this.rejectionsKey(now.getTime() - i * DAY_MS));
    const tallies = new Map<string, bigint>();
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.hgetall(key);
    const replies = await storeCall(() => pipeline.exec());
    for (const [err, counts] of replies ?? []) {
      if (err) throw err;
      for (const [field, count] of Object.entries(counts as Record<string, string>)) {
        tallies.set(field, (tallies.get(field) ?? 0n) + BigInt(count));
      }
    }
    return [...tallies]
      .map(([field, count]) => {
        const separator = field.indexOf(":");
        return { httpStatus: Number(field.slice(0, separator)), route: field.slice(separator + 1), count };
      })
      .sort((a, b) => (a.count === b.count ? a.route.localeCompare(b.route) : a.count > b.count ? -1 : 1));
  }

  /** Changes a recorded delivery (a queued one forwarded, a redelivery counted); a no-op once expired. */
  async update(id: string, change: (delivery: Delivery) => void): Promise<void> {
    const delivery = await this.find(id);
    if (delivery === undefined) return;
    change(delivery);
    // The record now carries its body, wherever it was read from.
    await storeCall(() =>
      this.redis
        .multi()
        .set(this.key(id), asBuffer(toBinary(DeliverySchema, delivery)), "KEEPTTL")
        .del(this.queuedKey(id))
        .exec(),
    );
  }

  /**
   * Records what several deliveries became (a forwarded batch: each one's status and task), in
   * one round trip and without reading them back: the fields are appended to each stored
   * record, which protobuf reads as a merge (the last value of a field wins), so the body a
   * record carries is not read back. A body still in the outbox is appended the same way, from
   * the outbox entry, in Redis: call it before the entries are acknowledged. Entries gone
   * (expired, or dropped past their route's cap) are left out.
   */
  async settleAll(outcomes: readonly { id: string; status: DeliveryStatus; taskId: string }[]): Promise<void> {
    if (outcomes.length === 0) return;
    const keys = [this.outboxKey, ...outcomes.flatMap(({ id }) => [this.key(id), this.queuedKey(id)])];
    const fields = outcomes.map(({ status, taskId }) =>
      asBuffer(toBinary(DeliverySchema, create(DeliverySchema, { status, taskId }))),
    );
    await storeCall(() => runScript(this.redis, SETTLE_SCRIPT, keys, fields));
  }

  async get(id: string): Promise<Delivery> {
    const delivery = await this.find(id);
    if (delivery === undefined) throw new DeliveryNotFoundError(id);
    return delivery;
  }

  /** The key naming the outbox entry that carries a queued record's body (see the class). */
  queuedKey(id: string): string {
    return `${this.options.keyPrefix}delivery-queued:${id}`;
  }

  /** A record with its body, from the outbox when it is still queued there. */
  private async find(id: string): Promise<Delivery | undefined> {
    const reply = (await storeCall(() =>
      runScriptBuffer(this.redis, GET_SCRIPT, [this.key(id), this.queuedKey(id), this.outboxKey], []),
    )) as [Buffer, Buffer | null] | null;
    if (reply === null) return undefined;
    const [bytes, queuedBody] = reply;
    const delivery = fromBinary(DeliverySchema, bytes);
    if (queuedBody && delivery.rawBody.length === 0) delivery.rawBody = queuedBody;
    return delivery;
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

  private get outboxKey(): string {
    return outboxKey(this.options.keyPrefix);
  }

  private get indexKey(): string {
    return `${this.options.keyPrefix}deliveries`;
  }

  private routeIndexKey(route: string, brief: boolean): string {
    return `${this.options.keyPrefix}deliveries:${brief ? "brief" : "full"}:${encodeURIComponent(route)}`;
  }

  /** The tally of refusals of the UTC day of `msecs`. */
  private rejectionsKey(msecs: number): string {
    return `${this.options.keyPrefix}rejections:${new Date(msecs).toISOString().slice(0, 10)}`;
  }

  private key(id: string): string {
    return `${this.options.keyPrefix}delivery:${id}`;
  }
}

/**
 * UUIDv7s in the order they are made: uuid's v7 with an explicit time draws a random sequence,
 * so two ids of one millisecond would sort at random; counting the sequence up within the
 * millisecond keeps them in order. Their random bits come from a pool drawn 4 KB at a time
 * rather than a system call per id.
 */
export class OrderedUuids {
  /** The newest id's millisecond and sequence: ids of one millisecond count up from it. */
  private last = { msecs: -1, seq: 0 };
  private readonly random = new RandomPool();

  /** An id for `msecs` (now unless given). */
  next(msecs = Date.now()): string {
    if (msecs === this.last.msecs) {
      this.last.seq += 1;
    } else if (msecs > this.last.msecs) {
      // Random, but low enough that counting up never runs out of the 32 bits.
      this.last = { msecs, seq: randomInt(2 ** 30) };
    } else {
      // Made after a later one (a slow submit): its own place in time.
      return uuidv7({ msecs, random: this.random.bytes(16) });
    }
    return uuidv7({ msecs, seq: this.last.seq, random: this.random.bytes(16) });
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

/** The allowlisted headers of a brief entry, each cut to a bounded length. */
export function briefHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const recorded: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || !BRIEF_HEADERS.has(name.toLowerCase())) continue;
    recorded[name] = (Array.isArray(value) ? value.join(", ") : value).slice(0, BRIEF_HEADER_CHARS);
  }
  return recorded;
}

const EMPTY = new Uint8Array(0);
/** `oldest` is a bound, not an id: its random bits are zero, so it sorts before its millisecond's ids. */
const ZERO_RANDOM = new Uint8Array(16);

function encodePageToken(lastId: string, filterKey: string): string {
  return Buffer.from(`${filterKey}|${lastId}`).toString("base64url");
}

function decodePageToken(token: string, filterKey: string): string {
  const [tokenFilter, lastId] = Buffer.from(token, "base64url").toString().split("|");
  if (tokenFilter !== filterKey || !lastId) throw new InvalidDeliveryPageTokenError();
  return lastId;
}
