import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { annotateActiveSpan, type Logger, StoreUnavailableError, TRACE_ATTRIBUTES } from "@hookmesh/kit";
import { type Event, EventSchema } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Delivery, DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { type BodyProgress, mediaType, readBody } from "./body.js";
import { type DeliveryLog, DeliveryNotFoundError, type NewDelivery, OrderedUuids } from "./delivery-log.js";
import { WebhookRejection } from "./http-errors.js";
import type { Intake, IntakeOutcome } from "./intake.js";
import type { DeliveryObserver } from "./metrics.js";
import type { Outbox } from "./outbox.js";
import type { SharedRateLimiter } from "./rate-limit.js";
import { traceContextOf } from "./trace.js";
import type { IncomingWebhook, WebhookProvider } from "./webhook-provider.js";

const NO_BODY = new Uint8Array(0);

/** The longest delivery id the tasks service takes (hookmesh.events.v1.Event). */
const MAX_DELIVERY_ID_LENGTH = 256;

/** A webhook endpoint as configured: its provider's rules and the secrets its senders sign with. */
export interface ResolvedEndpoint {
  provider: WebhookProvider;
  secrets: readonly string[];
  /** Accept requests without verifying them; only when explicitly configured. */
  unsigned: boolean;
}

/** The endpoint `/webhooks/{name}`, or undefined when there is none. */
export type EndpointResolver = (name: string) => Promise<ResolvedEndpoint | undefined>;

export interface WebhookReply {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Facts for the access log line. */
  log: Record<string, unknown>;
}

export interface PipelineDeps {
  resolve: EndpointResolver;
  tasks: Client<typeof TaskService>;
  intake: Pick<Intake, "accept">;
  outbox: Outbox;
  deliveries: DeliveryLog;
  rateLimiter: Pick<SharedRateLimiter, "take">;
  /** The address a request is rate-limited by (the peer, or what a trusted proxy says). */
  clientAddress: (req: IncomingMessage) => string;
  /** Seconds a provider should wait before retrying a delivery the gateway could not keep. */
  retryAfterSeconds: number;
  logger: Logger;
  /** Counts what became of each webhook request (redeliveries are not requests). */
  observe?: DeliveryObserver;
  now?: () => Date;
}

/** A request the pipeline has read and verified, on its way to becoming a task. */
interface Verified {
  route: string;
  resolved: ResolvedEndpoint;
  webhook: IncomingWebhook;
  event: Event;
  body: BodyProgress;
}

/**
 * What happens to every webhook: resolve the endpoint, rate-limit the sender, check type and
 * size, read the raw body, verify the signature on those bytes, parse, drop duplicates (and
 * replays of a signed body under a new delivery id) and make the delivery durable in the
 * gateway's outbox, in one Redis round trip, naming the task it becomes; the forwarder submits
 * it to tasks behind the answer. A 2xx only ever follows that; when it fails the answer is 503
 * with Retry-After, so the provider keeps the delivery. Every request is recorded in the
 * delivery log.
 */
export class WebhookPipeline {
  private readonly now: () => Date;
  private readonly taskIds = new OrderedUuids();

  constructor(private readonly deps: PipelineDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async handle(route: string, req: IncomingMessage): Promise<WebhookReply> {
    const receivedAt = this.now();
    let webhook: IncomingWebhook = { headers: req.headers, rawBody: Buffer.alloc(0), contentType: "", receivedAt };
    let resolved: ResolvedEndpoint | undefined;
    const body: BodyProgress = { size: 0, sha256: "" };
    try {
      // Taken before anything else, so that a sender probing routes spends its own budget
      // first; its round trip overlaps the lookup and the header checks, and its answer comes
      // before any other (a limited sender is answered 429 whatever else is wrong) and before a
      // byte of the body is read.
      const limit = this.deps.rateLimiter.take(`${route}|${this.deps.clientAddress(req)}`);
      limit.catch(() => {});
      const withinLimit = async () => {
        const wait = await limit;
        if (wait > 0)
          throw new WebhookRejection(429, "too many requests", "rate limit", { "retry-after": String(wait) });
      };
      const refuse = async (rejection: WebhookRejection): Promise<never> => {
        await withinLimit();
        throw rejection;
      };
      resolved = await this.deps.resolve(route).catch(async (err: unknown) => {
        if (!(err instanceof StoreUnavailableError)) throw err;
        return refuse(
          new WebhookRejection(503, "endpoint lookup unavailable, retry later", "custom webhooks store unavailable", {
            "retry-after": String(this.deps.retryAfterSeconds),
          }),
        );
      });
      if (!resolved) return await refuse(new WebhookRejection(404, "not found"));
      const { provider } = resolved;
      if (!resolved.unsigned && resolved.secrets.length === 0) {
        return await refuse(
          new WebhookRejection(
            404,
            `${provider.name} webhooks are not configured`,
            "no secret is configured for this endpoint",
          ),
        );
      }
      const contentType = mediaType(req.headers["content-type"]);
      if (!provider.contentTypes.includes(contentType)) {
        return await refuse(new WebhookRejection(415, `content type must be ${provider.contentTypes.join(" or ")}`));
      }
      await withinLimit();
      webhook = { ...webhook, contentType, rawBody: (await readBody(req, provider.maxBodyBytes, body)).bytes };
      if (!resolved.unsigned) provider.verify(webhook, resolved.secrets);
      const verdict = provider.parse(webhook);
      if (verdict.kind === "reply") {
        this.deps.observe?.(provider.provider, "answered");
        await this.record({
          route,
          resolved,
          webhook,
          body,
          status: DeliveryStatus.ANSWERED,
          httpStatus: verdict.status,
          reason: verdict.log,
        });
        return {
          status: verdict.status,
          body: verdict.body as Record<string, unknown>,
          log: { answered: verdict.log },
        };
      }
      // Without the raw body: the intake writes the request's bytes once, beside the event.
      const event = create(EventSchema, {
        ...verdict.event,
        provider: provider.provider,
        rawBody: NO_BODY,
        contentType,
        receiveTime: timestampFromDate(receivedAt),
        traceContext: traceContextOf(),
      });
      return await this.accept({ route, resolved, webhook, event, body });
    } catch (err) {
      if (!(err instanceof WebhookRejection)) throw err;
      this.deps.observe?.(resolved?.provider.provider, "rejected", err.status);
      // A request for an endpoint that does not exist is no delivery of anyone's: it is logged as
      // a request, not kept, so that unauthenticated traffic cannot fill the delivery log.
      if (!resolved && err.status !== 503) throw err;
      // Nor is a rate-limited request: a flood writes nothing.
      if (err.status === 429) throw err;
      await this.record({
        route,
        resolved,
        webhook,
        body,
        status: DeliveryStatus.REJECTED,
        httpStatus: err.status,
        reason: err.detail ?? err.message,
        ...err.context,
      });
      throw err;
    }
  }

  /**
   * Submits a logged delivery again, as if it had just arrived but past the duplicate check.
   * Only deliveries that passed verification when they arrived can be redelivered.
   */
  async redeliver(id: string, signal: AbortSignal): Promise<Delivery> {
    const original = await this.deps.deliveries.get(id);
    if (original.status === DeliveryStatus.REJECTED || original.status === DeliveryStatus.ANSWERED) {
      throw new RedeliveryRefusedError(
        `delivery ${id} was ${DeliveryStatus[original.status].toLowerCase()}, not a verified event`,
      );
    }
    if (original.status === DeliveryStatus.DUPLICATE) {
      throw new RedeliveryRefusedError(`delivery ${id} was a duplicate; redeliver the delivery it repeats`);
    }
    if (original.rawBodyTruncated) throw new RedeliveryRefusedError(`delivery ${id} has no complete body to resend`);
    const resolved = await this.deps.resolve(original.route);
    if (!resolved) throw new RedeliveryRefusedError(`route ${original.route} no longer exists`);
    const receivedAt = this.now();
    const webhook: IncomingWebhook = {
      headers: original.headers,
      rawBody: Buffer.from(original.rawBody),
      contentType: mediaType(original.headers["content-type"]),
      receivedAt,
    };
    const verdict = resolved.provider.parse(webhook);
    if (verdict.kind !== "event") throw new RedeliveryRefusedError(`delivery ${id} is not an event`);
    const event = create(EventSchema, {
      ...verdict.event,
      provider: resolved.provider.provider,
      rawBody: webhook.rawBody,
      contentType: webhook.contentType,
      receiveTime: timestampFromDate(receivedAt),
      traceContext: traceContextOf(),
    });
    const body = { size: webhook.rawBody.length, sha256: createHash("sha256").update(webhook.rawBody).digest("hex") };
    const reply = await this.submitNow({ route: original.route, resolved, webhook, event, body }, signal);
    await this.deps.deliveries.update(id, (d) => {
      d.redeliveries += 1;
    });
    return this.deps.deliveries.get(String(reply.log.logId));
  }

  /**
   * Makes a verified delivery durable in one round trip to the gateway's Redis (the duplicate
   * claim, the log entry and the outbox entry, together), naming the task it becomes: the
   * forwarder submits it behind the acknowledgment, with that id. The tasks service is not
   * asked, so the answer never waits for it.
   */
  private async accept(verified: Verified): Promise<WebhookReply> {
    const { event, resolved, route, webhook, body } = verified;
    const facts = { deliveryId: event.deliveryId, eventType: event.eventType };
    annotateActiveSpan({
      [TRACE_ATTRIBUTES.provider]: resolved.provider.name,
      [TRACE_ATTRIBUTES.deliveryId]: event.deliveryId,
    });
    // What the tasks service would refuse is refused here, before it is acknowledged.
    if (event.deliveryId.length > MAX_DELIVERY_ID_LENGTH) {
      throw new WebhookRejection(
        400,
        "delivery rejected as invalid",
        `event.delivery_id: must be at most ${MAX_DELIVERY_ID_LENGTH} characters`,
      ).withContext(facts);
    }
    const taskId = this.taskIds.next();
    annotateActiveSpan({ [TRACE_ATTRIBUTES.taskId]: taskId });
    let outcome: IntakeOutcome;
    try {
      outcome = await this.deps.intake.accept({
        provider: resolved.provider.name,
        sourceId: event.sourceId,
        deliveryId: event.deliveryId,
        content: { route, bodySha256: body.sha256, timestamp: resolved.provider.signedTimestamp?.(webhook) },
        entry: this.entry({ ...verified, status: DeliveryStatus.QUEUED, httpStatus: 202, taskId, ...facts }),
        event,
        taskId,
      });
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.warn(err, "delivery could not be made durable");
      throw new WebhookRejection(503, "delivery could not be made durable, retry later", "gateway store unavailable", {
        "retry-after": String(this.deps.retryAfterSeconds),
      }).withContext(facts);
    }
    if (!outcome.fresh) {
      const { claim } = outcome;
      this.deps.observe?.(resolved.provider.provider, "duplicate");
      const entry = await this.record({
        ...verified,
        status: DeliveryStatus.DUPLICATE,
        httpStatus: 202,
        taskId: claim.taskId,
        ...(claim.replayOf !== undefined && {
          reason: `replay: the same signed content as delivery ${claim.replayOf} within the duplicate window`,
        }),
        ...facts,
      });
      return {
        status: 202,
        body: { task_id: claim.taskId, duplicate: true },
        log: { ...facts, duplicate: true, replayOf: claim.replayOf, logId: entry?.id },
      };
    }
    const logId = outcome.delivery.id;
    this.deps.observe?.(resolved.provider.provider, "queued");
    return {
      status: 202,
      body: { task_id: taskId, duplicate: false, queued: true, delivery: logId },
      log: { ...facts, taskId, queued: true, logId },
    };
  }

  /**
   * A redelivery, past the duplicate check: submitted at once, so that the operator asking for
   * it learns which task it is; into the outbox when tasks does not take it in time.
   */
  private async submitNow(verified: Verified, signal: AbortSignal): Promise<WebhookReply> {
    const { event, resolved } = verified;
    const facts = { deliveryId: event.deliveryId, eventType: event.eventType };
    try {
      const { task, duplicate } = await this.deps.tasks.submitEvent(
        { event },
        { signal, timeoutMs: resolved.provider.submitTimeoutMs },
      );
      const taskId = task!.id;
      annotateActiveSpan({ [TRACE_ATTRIBUTES.taskId]: taskId, [TRACE_ATTRIBUTES.routeId]: task!.routeId });
      const status = duplicate
        ? DeliveryStatus.DUPLICATE
        : task!.state === TaskState.IGNORED
          ? DeliveryStatus.IGNORED
          : DeliveryStatus.ACCEPTED;
      const entry = await this.record({ ...verified, status, httpStatus: 202, taskId, ...facts });
      return {
        status: 202,
        body: { task_id: taskId, duplicate },
        log: { ...facts, taskId, duplicate, logId: entry?.id },
      };
    } catch (err) {
      const failure = ConnectError.from(err);
      if (failure.code === Code.InvalidArgument) {
        throw new WebhookRejection(400, "delivery rejected as invalid", failure.rawMessage).withContext(facts);
      }
      return this.queue(verified, `${Code[failure.code]}: ${failure.rawMessage}`);
    }
  }

  /** A redelivery the tasks service did not take: the outbox keeps it. */
  private async queue(verified: Verified, why: string): Promise<WebhookReply> {
    const { event } = verified;
    const facts = { deliveryId: event.deliveryId, eventType: event.eventType };
    try {
      const entry = await this.deps.deliveries.record(
        this.entry({ ...verified, status: DeliveryStatus.QUEUED, httpStatus: 202, reason: why, ...facts }),
      );
      await this.deps.outbox.add(event, entry.id, "");
      return {
        status: 202,
        body: { queued: true, delivery: entry.id },
        log: { ...facts, queued: true, reason: why, logId: entry.id },
      };
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.warn(err, "delivery could not be made durable");
      throw new WebhookRejection(
        503,
        "delivery could not be made durable, retry later",
        `tasks: ${why}; outbox: unavailable`,
        {
          "retry-after": String(this.deps.retryAfterSeconds),
        },
      ).withContext(facts);
    }
  }

  /** Records a delivery; a log that cannot be written is a warning, never a failed request. */
  private async record(fields: RecordFields): Promise<Delivery | undefined> {
    return this.deps.deliveries.record(this.entry(fields)).catch((err: unknown) => {
      this.warn(err, "could not record the delivery");
      return undefined;
    });
  }

  private entry(fields: RecordFields): NewDelivery & { rawBody: Buffer } {
    const {
      route,
      resolved,
      webhook,
      body,
      status,
      httpStatus,
      reason = "",
      taskId = "",
      deliveryId = "",
      eventType = "",
    } = fields;
    return {
      route,
      provider: resolved?.provider.provider,
      status,
      httpStatus,
      reason,
      taskId,
      deliveryId,
      eventType,
      receivedAt: webhook.receivedAt,
      headers: webhook.headers,
      rawBody: webhook.rawBody,
      bodySize: body.size,
      bodySha256: body.sha256,
      redact: resolved?.provider.signatureHeaders,
    };
  }

  private warn(err: unknown, message: string): void {
    this.deps.logger.warn({ err: err instanceof Error ? err.message : String(err) }, message);
  }
}

interface RecordFields {
  route: string;
  resolved: ResolvedEndpoint | undefined;
  webhook: IncomingWebhook;
  body: BodyProgress;
  status: DeliveryStatus;
  httpStatus: number;
  reason?: string;
  taskId?: string;
  deliveryId?: string;
  eventType?: string;
}

/** A delivery that cannot be redelivered; `message` says why. */
export class RedeliveryRefusedError extends Error {
  override name = "RedeliveryRefusedError";
}

export { DeliveryNotFoundError };
