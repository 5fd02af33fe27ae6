import { type RedisClient, runScript, type WaitReplicas } from "@hookmesh/kit";
import type { Event } from "../../gen/hookmesh/events/v1/event_pb.js";
import type { Delivery } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { CLAIM_LUA, type Claim, type ClaimReply, claimOf, type DeliveryDedup, type SignedContent } from "./dedup.js";
import { type DeliveryLog, type NewDelivery, RECORD_LUA } from "./delivery-log.js";
import { encodeEventWithoutBody, type Outbox } from "./outbox.js";
import { storeCall } from "./store-call.js";

/**
 * The acknowledgment's one round trip: claims the delivery in the duplicate check (holding
 * the task id the acknowledgment names), records it in the delivery log and appends it to the
 * outbox, all or nothing. A duplicate writes nothing and answers with the first delivery's task.
 * The raw body is written once, into the outbox entry, which the log record's queued key names
 * until the forwarder moves the body into the record (delivery-log.ts).
 * KEYS: claim, signed content, log record, log index, log route index, outbox stream, log queued key.
 * ARGV: window ms, delivery id, task id, log id, log record (without body), retention ms,
 * oldest log id, route cap, log record prefix, event (without body), raw body.
 */
const INTAKE_SCRIPT = `${CLAIM_LUA}${RECORD_LUA}
local claimed = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if claimed[1] ~= 'fresh' then return claimed end
record(KEYS[3], KEYS[4], KEYS[5], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
local id = redis.call('XADD', KEYS[6], '*', 'event', ARGV[10], 'body', ARGV[11], 'log', ARGV[4], 'dedup', KEYS[1], 'task', ARGV[3])
redis.call('SET', KEYS[7], id, 'PX', ARGV[6])
return {'fresh', id}
`;

export interface IntakeRequest {
  /** The duplicate check's identity of the delivery: provider name, source id, delivery id, signed content. */
  provider: string;
  sourceId: string;
  deliveryId: string;
  content: SignedContent;
  /** The delivery-log entry, QUEUED, naming `taskId`, with the raw body. */
  entry: NewDelivery & { rawBody: Buffer };
  /** The event; its raw body is left out (the entry's is the one written): best built without one. */
  event: Event;
  /** The id the task will have; the acknowledgment names it. */
  taskId: string;
}

export type IntakeOutcome =
  | { fresh: true; delivery: Delivery }
  | { fresh: false; claim: Extract<Claim, { fresh: false }> };

/**
 * Makes a verified delivery durable in the gateway's own Redis, in one script: what stands
 * behind the 202. With replicas to wait for, the 202 waits until they hold it too; fewer
 * within the timeout are a store outage (503 with Retry-After: the sender sends again and the
 * duplicate check finds the first copy if it survived). The tasks service is not asked: the
 * forwarder submits the outbox behind the acknowledgment.
 */
export class Intake {
  constructor(
    private readonly redis: RedisClient,
    private readonly parts: { dedup: DeliveryDedup; deliveries: DeliveryLog; outbox: Outbox },
    /** Replicas that must hold the delivery before it is acknowledged (`GATEWAY_REDIS_WAIT_REPLICAS`). */
    private readonly waitReplicas?: WaitReplicas,
  ) {}

  async accept(request: IntakeRequest): Promise<IntakeOutcome> {
    const { dedup, deliveries, outbox } = this.parts;
    const { key, contentKey } = dedup.keys(request.provider, request.sourceId, request.deliveryId, request.content);
    const prepared = deliveries.prepare(request.entry, { bodyQueued: true });
    const keys = [key, contentKey, ...prepared.keys, outbox.key, deliveries.queuedKey(prepared.delivery.id)];
    const args = [
      dedup.windowMs,
      request.deliveryId,
      request.taskId,
      ...prepared.args,
      encodeEventWithoutBody(request.event),
      request.entry.rawBody,
    ];
    const reply = (await storeCall(() =>
      runScript(this.redis, INTAKE_SCRIPT, keys, args, this.waitReplicas),
    )) as ClaimReply;
    if (reply[0] !== "fresh") return { fresh: false, claim: claimOf(reply, key) as Extract<Claim, { fresh: false }> };
    outbox.notifyAdded();
    return { fresh: true, delivery: prepared.delivery };
  }
}
