import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../http-errors.js";
import {
  BuiltInWebhookProvider,
  header,
  type IncomingWebhook,
  JSON_TYPE,
  type ProviderVerdict,
} from "../webhook-provider.js";
import { normalizeSentry } from "./normalize.js";

const SIGNATURE = { header: "Sentry-Hook-Signature", secrets: "client secret" };
/**
 * `event_alert` and `error` webhooks carry a whole serialized event. Sentry accepts events of
 * up to 1 MiB, and once serialized again (non-ASCII text escaped as `\uXXXX`, 6 bytes for a
 * character, plus the webhook's own fields) a large one can grow well past that; 4 MiB holds it.
 */
export const SENTRY_MAX_BODY_BYTES = 4 * 1024 * 1024;

/**
 * Sentry integration-platform webhooks: `Sentry-Hook-Signature` is the bare hex HMAC-SHA256
 * of the raw body under the integration's client secret. `Sentry-Hook-Timestamp` is not part
 * of what is signed, so it proves nothing about freshness; the duplicate check on `Request-ID`
 * is the replay guard.
 */
export class SentryProvider extends BuiltInWebhookProvider {
  constructor(maxBodyBytes = SENTRY_MAX_BODY_BYTES) {
    // Sentry waits 1 s for an answer; half of it is the most the tasks service gets.
    super("sentry", Provider.SENTRY, [JSON_TYPE], 500, SIGNATURE, maxBodyBytes);
  }

  verify(webhook: IncomingWebhook, secrets: readonly string[]): void {
    this.requireHmac(webhook.rawBody, this.signatureOf(webhook), secrets);
  }

  parse(webhook: IncomingWebhook): ProviderVerdict {
    const resource = header(webhook.headers, "sentry-hook-resource");
    if (!resource) throw new WebhookRejection(400, "missing Sentry-Hook-Resource header");
    const payload = this.jsonBody(webhook);
    // Request-ID is Sentry's id for the request; a sender without it is told apart by its bytes.
    const deliveryId = this.deliveryIdOf(webhook, "request-id");
    return { kind: "event", event: normalizeSentry(payload, deliveryId, resource) };
  }
}
