import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type CustomRoute, HmacAlgorithm, SignedContent } from "../../../gen/hookmesh/gateway/v1/custom_route_pb.js";
import { WebhookRejection } from "../http-errors.js";
import {
  bodyDigestId,
  header,
  hmacMatches,
  type IncomingWebhook,
  obj,
  type ProviderVerdict,
  str,
  type WebhookProvider,
} from "../webhook-provider.js";
import { stripSecret } from "./route-store.js";
import { splitSecrets } from "./validate.js";

/** A route's `max_body_bytes` of 0 means this. */
export const CUSTOM_DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** How far a signed timestamp may be from the receive time, either way. */
export const CUSTOM_TIMESTAMP_TOLERANCE_MS = 5 * 60 * 1000;

const JSON_TYPE = "application/json";
/**
 * What custom senders send: JSON (almost all), form-encoded, plain text, and opaque bytes.
 * The body is never interpreted beyond an optional `text` field of a JSON object, so a
 * broader list would be safe; it is kept to these so that a misrouted request (say, a
 * multipart upload) gets a clear 415.
 */
export const CUSTOM_CONTENT_TYPES: readonly string[] = [
  JSON_TYPE,
  "application/x-www-form-urlencoded",
  "text/plain",
  "application/octet-stream",
];

const ALGORITHMS = {
  [HmacAlgorithm.SHA1]: "sha1",
  [HmacAlgorithm.SHA256]: "sha256",
  [HmacAlgorithm.SHA512]: "sha512",
} as const;

/**
 * `POST /webhooks/custom/{name}` for one stored route: a hex HMAC of the raw body, or of
 * `{timestamp}.{raw body}`, in the route's header after its prefix. The delivery id is the
 * route's delivery id header or, without one, the body's SHA-256 (so a resent body is a
 * duplicate); the event type is the route's event type header or its name.
 */
export class CustomProvider implements WebhookProvider {
  readonly name: string;
  readonly provider = Provider.CUSTOM;
  readonly contentTypes = CUSTOM_CONTENT_TYPES;
  readonly maxBodyBytes: number;
  readonly submitTimeoutMs = 5_000;
  readonly signatureHeaders: readonly string[];
  /** The route, secret stripped: safe to log. */
  readonly route: CustomRoute;
  readonly #secrets: readonly string[];
  readonly #algorithm: "sha1" | "sha256" | "sha512";

  /** `route` as the store's `get` returns it, with its secret. */
  constructor(route: CustomRoute) {
    const algorithm = ALGORITHMS[route.algorithm as keyof typeof ALGORITHMS];
    if (!algorithm) throw new Error(`custom route ${route.name} has no usable algorithm`);
    this.#algorithm = algorithm;
    this.#secrets = splitSecrets(route.secret);
    this.route = stripSecret(route);
    this.signatureHeaders = [route.signatureHeader];
    this.name = `custom/${route.name}`;
    this.maxBodyBytes = route.maxBodyBytes > 0 ? route.maxBodyBytes : CUSTOM_DEFAULT_MAX_BODY_BYTES;
  }

  /**
   * The route's secrets (comma-separated for rotation), for `verify`. Empty when the route
   * has none, which the pipeline should answer with 404 like an unconfigured provider.
   * A getter, so that logging or serializing the provider never shows them.
   */
  get secrets(): readonly string[] {
    return this.#secrets;
  }

  signedTimestamp(webhook: IncomingWebhook): string | undefined {
    if (this.route.signedContent !== SignedContent.TIMESTAMP_DOT_BODY) return undefined;
    return header(webhook.headers, this.route.timestampHeader.toLowerCase());
  }

  verify(webhook: IncomingWebhook, secrets: readonly string[]): void {
    const { signatureHeader, signaturePrefix, timestampHeader } = this.route;
    const signature = header(webhook.headers, signatureHeader.toLowerCase());
    if (!signature) throw new WebhookRejection(401, "signature required", `missing ${signatureHeader}`);
    // The prefix is compared without regard to case: `SHA256=` and `sha256=` mean the same.
    if (signature.slice(0, signaturePrefix.length).toLowerCase() !== signaturePrefix.toLowerCase()) {
      throw new WebhookRejection(
        401,
        "signature mismatch",
        `${signatureHeader} does not start with "${signaturePrefix}"`,
      );
    }
    let content = webhook.rawBody;
    if (this.route.signedContent === SignedContent.TIMESTAMP_DOT_BODY) {
      const timestamp = header(webhook.headers, timestampHeader.toLowerCase());
      if (!timestamp) throw new WebhookRejection(401, "timestamp required", `missing ${timestampHeader}`);
      if (!/^\d{1,12}$/.test(timestamp)) {
        throw new WebhookRejection(401, "timestamp invalid", `${timestampHeader} is not a Unix time in seconds`);
      }
      const skewMs = Math.abs(webhook.receivedAt.getTime() - Number(timestamp) * 1000);
      if (skewMs > CUSTOM_TIMESTAMP_TOLERANCE_MS) {
        throw new WebhookRejection(
          401,
          "stale timestamp",
          `${timestampHeader} is ${Math.round(skewMs / 1000)} s from the receive time (limit ${CUSTOM_TIMESTAMP_TOLERANCE_MS / 1000} s)`,
        );
      }
      content = Buffer.concat([Buffer.from(`${timestamp}.`), webhook.rawBody]);
    }
    if (!hmacMatches(this.#algorithm, content, signature.slice(signaturePrefix.length), secrets)) {
      throw new WebhookRejection(401, "signature mismatch", `${signatureHeader} does not match any configured secret`);
    }
  }

  parse(webhook: IncomingWebhook): ProviderVerdict {
    const { name, eventTypeHeader, deliveryIdHeader } = this.route;
    const eventType = (eventTypeHeader && header(webhook.headers, eventTypeHeader.toLowerCase())) || name;
    const deliveryId =
      (deliveryIdHeader && header(webhook.headers, deliveryIdHeader.toLowerCase())) || bodyDigestId(webhook.rawBody);
    return {
      kind: "event",
      event: {
        deliveryId,
        sourceId: name,
        eventType,
        subject: { key: `custom:${name}` },
        text: textOf(webhook),
      },
    };
  }
}

/**
 * A JSON object's string `text` field, so that text triggers (mentions) can match custom
 * events; "" otherwise. A body labelled JSON that is not JSON is refused with 400.
 */
function textOf(webhook: IncomingWebhook): string {
  if (webhook.contentType !== JSON_TYPE) return "";
  let payload: unknown;
  try {
    payload = JSON.parse(webhook.rawBody.toString("utf8"));
  } catch {
    throw new WebhookRejection(400, "body is not valid JSON");
  }
  return str(obj(payload).text);
}
