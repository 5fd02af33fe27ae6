import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../http-errors.js";
import {
  BuiltInWebhookProvider,
  bodyDigestId,
  FORM_TYPE,
  header,
  type IncomingWebhook,
  int,
  JSON_TYPE,
  type JsonObject,
  obj,
  type ProviderVerdict,
  parseJsonObject,
  str,
} from "../webhook-provider.js";
import { normalizeSlackEvent, normalizeSlackInteraction, normalizeSlashCommand } from "./normalize.js";

const VERSION_PREFIX = "v0=";

const SIGNATURE = { header: "X-Slack-Signature", secrets: "signing secret" };
/**
 * Slack's payloads are small (a message's text is capped at 40,000 characters; a modal's state
 * at its 100 blocks), so 1 MiB holds any of them with room to spare and refuses anything else
 * early.
 */
export const SLACK_MAX_BODY_BYTES = 1024 * 1024;

/** Slack's rule: a request whose signed timestamp is more than five minutes off is a replay. */
export const SLACK_MAX_CLOCK_SKEW_SECONDS = 5 * 60;

/**
 * Slack: the Events API (JSON), slash commands and interactivity (form-encoded) on one URL.
 * Each request is signed over `v0:{timestamp}:{body}`, and the timestamp bounds replays.
 *
 * Retries (`X-Slack-Retry-Num`) need nothing here: a retried event carries the same `event_id`,
 * so the pipeline's duplicate check answers it without running it again.
 */
export class SlackProvider extends BuiltInWebhookProvider {
  constructor(maxBodyBytes = SLACK_MAX_BODY_BYTES) {
    // Slack gives up after 3 s; what is not submitted after 2 goes to the outbox.
    super("slack", Provider.SLACK, [JSON_TYPE, FORM_TYPE], 2_000, SIGNATURE, maxBodyBytes);
  }

  signedTimestamp(webhook: IncomingWebhook): string | undefined {
    return header(webhook.headers, "x-slack-request-timestamp");
  }

  verify(webhook: IncomingWebhook, secrets: readonly string[]): void {
    const signature = this.signatureOf(webhook);
    const timestamp = header(webhook.headers, "x-slack-request-timestamp");
    if (!timestamp) throw new WebhookRejection(401, "signature required", "missing X-Slack-Request-Timestamp");
    if (!/^\d{1,12}$/.test(timestamp)) {
      throw new WebhookRejection(401, "invalid timestamp", "X-Slack-Request-Timestamp is not a number of seconds");
    }
    const skew = Math.abs(webhook.receivedAt.getTime() / 1000 - Number(timestamp));
    if (skew > SLACK_MAX_CLOCK_SKEW_SECONDS) {
      throw new WebhookRejection(
        401,
        "stale timestamp",
        `X-Slack-Request-Timestamp is ${Math.round(skew)} s from the receive time (limit ${SLACK_MAX_CLOCK_SKEW_SECONDS} s)`,
      );
    }
    if (!signature.startsWith(VERSION_PREFIX)) {
      throw new WebhookRejection(401, "signature mismatch", "X-Slack-Signature is not a v0= signature");
    }
    const signed = Buffer.concat([Buffer.from(`v0:${timestamp}:`), webhook.rawBody]);
    this.requireHmac(signed, signature.slice(VERSION_PREFIX.length), secrets);
  }

  parse(webhook: IncomingWebhook): ProviderVerdict {
    return webhook.contentType === FORM_TYPE ? parseForm(webhook.rawBody) : parseEventsApi(this.jsonBody(webhook));
  }
}

/** The Events API: the URL handshake, rate-limit notices, and events. */
function parseEventsApi(body: JsonObject): ProviderVerdict {
  const type = str(body.type);
  switch (type) {
    case "url_verification": {
      const challenge = str(body.challenge);
      if (!challenge) throw new WebhookRejection(400, "url_verification has no challenge");
      return { kind: "reply", status: 200, body: { challenge }, log: "url_verification" };
    }
    case "app_rate_limited":
      // Slack's notice that it is dropping this app's events for the current minute: nothing to
      // run, only to record.
      return {
        kind: "reply",
        status: 200,
        body: { ok: true },
        log: `app_rate_limited: team ${str(body.team_id)}, minute ${int(body.minute_rate_limited)}`,
      };
    case "event_callback": {
      const eventId = str(body.event_id);
      const eventType = str(obj(body.event).type);
      if (!eventId) throw new WebhookRejection(400, "event_callback has no event_id");
      if (!eventType) throw new WebhookRejection(400, "event_callback has no event.type");
      return { kind: "event", event: normalizeSlackEvent(body, eventId, eventType) };
    }
    default:
      throw new WebhookRejection(400, "unsupported Slack payload type", `type ${JSON.stringify(type)}`);
  }
}

/** Form-encoded requests: the certificate check, interactivity (`payload=`) and slash commands. */
function parseForm(rawBody: Buffer): ProviderVerdict {
  const form = new URLSearchParams(rawBody.toString("utf8"));
  if (form.get("ssl_check") === "1") return { kind: "reply", status: 200, body: {}, log: "ssl_check" };
  const payloadJson = form.get("payload");
  if (payloadJson !== null) {
    const payload = parseJsonObject(payloadJson);
    const type = str(payload.type);
    if (!type) throw new WebhookRejection(400, "interactivity payload has no type");
    return { kind: "event", event: normalizeSlackInteraction(payload, type, bodyDigestId(rawBody)) };
  }
  if (form.get("command")) return { kind: "event", event: normalizeSlashCommand(form, bodyDigestId(rawBody)) };
  throw new WebhookRejection(400, "unsupported Slack payload type", "form body has neither payload nor command");
}
