import type { IncomingMessage } from "node:http";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { mediaType, readBody } from "../body.js";
import { WebhookRejection } from "../http-errors.js";
import type { Intake } from "../intake.js";
import { traceContextOf } from "../trace.js";
import { normalizeGitHub, type JsonObject } from "./normalize.js";
import { verifyGitHubSignature } from "./signature.js";

export interface GitHubWebhookOptions {
  /** Accepted secrets; empty means the route is not configured and answers 404. */
  secrets: readonly string[];
  maxBodyBytes: number;
}

export interface WebhookReply {
  status: number;
  body: Record<string, unknown>;
  /** Facts for the access log. */
  log: Record<string, unknown>;
}

const JSON_TYPE = "application/json";
const FORM_TYPE = "application/x-www-form-urlencoded";

/**
 * `POST /webhooks/github`: checks the request in the order that tells an unauthenticated
 * sender the least (size and type, then signature, then content), and submits the event.
 */
export class GitHubWebhook {
  constructor(
    private readonly intake: Intake,
    private readonly options: GitHubWebhookOptions,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async handle(req: IncomingMessage, signal: AbortSignal): Promise<WebhookReply> {
    if (this.options.secrets.length === 0) {
      throw new WebhookRejection(404, "github webhooks are not configured", "GITHUB_WEBHOOK_SECRET is not set");
    }
    const contentType = mediaType(req.headers["content-type"]);
    if (contentType !== JSON_TYPE && contentType !== FORM_TYPE) {
      throw new WebhookRejection(415, `content type must be ${JSON_TYPE} or ${FORM_TYPE}`);
    }
    const rawBody = await readBody(req, this.options.maxBodyBytes);
    const signature = header(req, "x-hub-signature-256");
    if (!signature) throw new WebhookRejection(401, "signature required", "missing X-Hub-Signature-256");
    if (!verifyGitHubSignature(rawBody, signature, this.options.secrets)) {
      throw new WebhookRejection(401, "signature mismatch", "X-Hub-Signature-256 does not match any configured secret");
    }
    const eventType = header(req, "x-github-event");
    const deliveryId = header(req, "x-github-delivery");
    if (!eventType) throw new WebhookRejection(400, "missing X-GitHub-Event header");
    if (!deliveryId) throw new WebhookRejection(400, "missing X-GitHub-Delivery header");
    const log = { deliveryId, eventType };
    try {
      return await this.accept(req, rawBody, contentType, log, signal);
    } catch (err) {
      // Past this point the delivery has an id, which the log line must carry to be traceable.
      if (err instanceof WebhookRejection) err.context = log;
      throw err;
    }
  }

  private async accept(
    req: IncomingMessage,
    rawBody: Buffer,
    contentType: string,
    log: { deliveryId: string; eventType: string },
    signal: AbortSignal,
  ): Promise<WebhookReply> {
    const payload = parsePayload(rawBody, contentType);
    if (log.eventType === "ping") return { status: 200, body: { ok: true, zen: typeof payload.zen === "string" ? payload.zen : "" }, log };
    const event = normalizeGitHub({
      ...log,
      hookId: header(req, "x-github-hook-id") ?? "",
      payload,
      rawBody,
      contentType,
      receiveTime: timestampFromDate(this.now()),
      traceContext: traceContextOf(req.headers),
    });
    const accepted = await this.intake.submit(event, signal);
    return {
      status: 202,
      body: { task_id: accepted.taskId, duplicate: accepted.duplicate },
      log: { ...log, taskId: accepted.taskId, duplicate: accepted.duplicate },
    };
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** GitHub sends JSON as the body, or form-encoded with the JSON in the `payload` field. */
function parsePayload(rawBody: Buffer, contentType: string): JsonObject {
  const json = contentType === FORM_TYPE ? new URLSearchParams(rawBody.toString("utf8")).get("payload") : rawBody.toString("utf8");
  if (json === null) throw new WebhookRejection(400, "form body has no payload field");
  let payload: unknown;
  try {
    payload = JSON.parse(json);
  } catch {
    throw new WebhookRejection(400, "body is not valid JSON");
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new WebhookRejection(400, "body must be a JSON object");
  }
  return payload as JsonObject;
}
