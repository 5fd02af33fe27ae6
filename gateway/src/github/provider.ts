import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../http-errors.js";
import { header, parseJsonObject, str, type IncomingWebhook, type ProviderVerdict, type WebhookProvider } from "../webhook-provider.js";
import { normalizeGitHub, type JsonObject } from "./normalize.js";
import { verifyGitHubSignature } from "./signature.js";

const JSON_TYPE = "application/json";
const FORM_TYPE = "application/x-www-form-urlencoded";

/** GitHub caps webhook payloads at 25 MB. */
export const GITHUB_MAX_BODY_BYTES = 25 * 1024 * 1024;

/**
 * GitHub webhooks: `X-Hub-Signature-256` over the raw body; the delivery GUID (reused when
 * GitHub redelivers) scoped by the hook id is the identity; no timestamp is signed, so the
 * duplicate check is the replay guard. GitHub waits 10 s for an answer.
 */
export class GitHubProvider implements WebhookProvider {
  readonly name = "github";
  readonly provider = Provider.GITHUB;
  readonly contentTypes = [JSON_TYPE, FORM_TYPE];
  readonly submitTimeoutMs = 5_000;

  constructor(readonly maxBodyBytes = GITHUB_MAX_BODY_BYTES) {}

  verify(webhook: IncomingWebhook, secrets: readonly string[]): void {
    const signature = header(webhook.headers, "x-hub-signature-256");
    if (!signature) throw new WebhookRejection(401, "signature required", "missing X-Hub-Signature-256");
    if (!verifyGitHubSignature(webhook.rawBody, signature, secrets)) {
      throw new WebhookRejection(401, "signature mismatch", "X-Hub-Signature-256 does not match any configured secret");
    }
  }

  parse(webhook: IncomingWebhook): ProviderVerdict {
    const eventType = header(webhook.headers, "x-github-event");
    const deliveryGuid = header(webhook.headers, "x-github-delivery");
    if (!eventType) throw new WebhookRejection(400, "missing X-GitHub-Event header");
    if (!deliveryGuid) throw new WebhookRejection(400, "missing X-GitHub-Delivery header");
    const hookId = header(webhook.headers, "x-github-hook-id") ?? "";
    const payload = parsePayload(webhook.rawBody, webhook.contentType);
    if (eventType === "ping") return { kind: "reply", status: 200, body: { ok: true, zen: str(payload.zen) }, log: "ping" };
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
  const json = contentType === FORM_TYPE ? new URLSearchParams(rawBody.toString("utf8")).get("payload") : rawBody.toString("utf8");
  if (json === null) throw new WebhookRejection(400, "form body has no payload field");
  return parseJsonObject(json);
}
