import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../http-errors.js";
import {
  BuiltInWebhookProvider,
  FORM_TYPE,
  header,
  type IncomingWebhook,
  JSON_TYPE,
  type ProviderVerdict,
  parseJsonObject,
  str,
} from "../webhook-provider.js";
import { type JsonObject, normalizeGitHub } from "./normalize.js";

const SIGNATURE_PREFIX = "sha256=";

const SIGNATURE = { header: "X-Hub-Signature-256", secrets: "secret" };
/** GitHub caps webhook payloads at 25 MB. */
export const GITHUB_MAX_BODY_BYTES = 25 * 1024 * 1024;

/**
 * GitHub webhooks: `X-Hub-Signature-256` over the raw body; the delivery GUID (reused when
 * GitHub redelivers) scoped by the hook id is the identity; no timestamp is signed, so the
 * duplicate check is the replay guard. GitHub waits 10 s for an answer.
 */
export class GitHubProvider extends BuiltInWebhookProvider {
  constructor(maxBodyBytes = GITHUB_MAX_BODY_BYTES) {
    // Half of GitHub's 10 s: the rest is the outbox's, and the answer's way back.
    super("github", Provider.GITHUB, [JSON_TYPE, FORM_TYPE], 5_000, SIGNATURE, maxBodyBytes);
  }

  /** `X-Hub-Signature-256` is `sha256=` + the hex HMAC-SHA256 of the raw body; any configured secret may have made it (rotation). */
  verify(webhook: IncomingWebhook, secrets: readonly string[]): void {
    const signature = this.signatureOf(webhook);
    const hex = signature.startsWith(SIGNATURE_PREFIX) ? signature.slice(SIGNATURE_PREFIX.length) : "";
    this.requireHmac(webhook.rawBody, hex, secrets);
  }

  parse(webhook: IncomingWebhook): ProviderVerdict {
    const eventType = header(webhook.headers, "x-github-event");
    const deliveryGuid = header(webhook.headers, "x-github-delivery");
    if (!eventType) throw new WebhookRejection(400, "missing X-GitHub-Event header");
    if (!deliveryGuid) throw new WebhookRejection(400, "missing X-GitHub-Delivery header");
    const hookId = header(webhook.headers, "x-github-hook-id") ?? "";
    const payload = parsePayload(webhook.rawBody, webhook.contentType);
    if (eventType === "ping")
      return { kind: "reply", status: 200, body: { ok: true, zen: str(payload.zen) }, log: "ping" };
    // The hook id becomes the event's source id, which scopes the GUID: the same GUID from two
    // hooks (a repository's and an organization's) is two deliveries.
    const event = normalizeGitHub({
      eventType,
      deliveryId: deliveryGuid,
      hookId,
      payload,
      rawBody: webhook.rawBody,
      contentType: webhook.contentType,
      receiveTime: timestampFromDate(webhook.receivedAt),
    });
    return { kind: "event", event };
  }
}

/** GitHub sends JSON as the body, or form-encoded with the JSON in the `payload` field. */
function parsePayload(rawBody: Buffer, contentType: string): JsonObject {
  const json =
    contentType === FORM_TYPE ? new URLSearchParams(rawBody.toString("utf8")).get("payload") : rawBody.toString("utf8");
  if (json === null) throw new WebhookRejection(400, "form body has no payload field");
  return parseJsonObject(json);
}
