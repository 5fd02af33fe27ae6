import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../http-errors.js";
import {
  BuiltInWebhookProvider,
  type IncomingWebhook,
  JSON_TYPE,
  type ProviderVerdict,
  str,
} from "../webhook-provider.js";
import { normalizeJira } from "./normalize.js";

const SIGNATURE = { header: "X-Hub-Signature", secrets: "secret" };
/**
 * A Jira body carries the whole issue: every field, custom fields included, and on updates
 * the changelog. Its comment and description are capped at 32,767 characters each, so real
 * bodies stay well under 1 MiB; 10 MiB leaves room for sites with hundreds of custom fields.
 */
export const JIRA_MAX_BODY_BYTES = 10 * 1024 * 1024;

/**
 * Jira webhooks registered with a secret: `X-Hub-Signature: sha256=<hex>` (WebSub's
 * `method=signature`) over the raw body. `X-Atlassian-Webhook-Identifier` stays the same
 * across Jira's retries (for up to ~30 minutes, after 408/409/425/429/5xx or a timeout), which
 * makes it the identity; no timestamp is signed, so the duplicate check is the replay guard.
 */
export class JiraProvider extends BuiltInWebhookProvider {
  constructor(maxBodyBytes = JIRA_MAX_BODY_BYTES) {
    // Jira retries a slow answer as a failure: after 5 s the outbox takes over, well before that.
    super("jira", Provider.JIRA, [JSON_TYPE], 5_000, SIGNATURE, maxBodyBytes);
  }

  verify(webhook: IncomingWebhook, secrets: readonly string[]): void {
    const signature = this.signatureOf(webhook);
    const separator = signature.indexOf("=");
    if (separator <= 0)
      throw new WebhookRejection(401, "signature mismatch", "X-Hub-Signature is not method=signature");
    const method = signature.slice(0, separator);
    if (method !== "sha256") {
      throw new WebhookRejection(
        401,
        "unsupported signature method",
        `X-Hub-Signature method ${JSON.stringify(method.slice(0, 32))} is not supported (only sha256)`,
      );
    }
    this.requireHmac(webhook.rawBody, signature.slice(separator + 1), secrets);
  }

  parse(webhook: IncomingWebhook): ProviderVerdict {
    const payload = this.jsonBody(webhook);
    const eventType = str(payload.webhookEvent);
    if (!eventType) throw new WebhookRejection(400, "body has no webhookEvent");
    // Jira Server and Data Center send no identifier; the digest of the body, which includes
    // Jira's millisecond `timestamp`, tells their events apart.
    const deliveryId = this.deliveryIdOf(webhook, "x-atlassian-webhook-identifier");
    return { kind: "event", event: normalizeJira(payload, deliveryId, eventType) };
  }
}
