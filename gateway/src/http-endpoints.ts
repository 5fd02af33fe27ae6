import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "@hookmesh/kit";
import { context } from "@opentelemetry/api";
import { WebhookRejection } from "./http-errors.js";
import type { WebhookPipeline, WebhookReply } from "./pipeline.js";
import { endWebhookSpan, startWebhookSpan } from "./trace.js";

export interface HttpEndpointsDeps {
  pipeline: Pick<WebhookPipeline, "handle">;
  /** True when the gateway can make deliveries durable right now. */
  ready: (signal: AbortSignal) => Promise<boolean>;
  logger: Logger;
}

/** `/webhooks/github`, `/webhooks/custom/my-tool`, ...: everything after the prefix names the endpoint. */
const WEBHOOKS = "/webhooks/";

/**
 * The gateway's HTTP endpoints: `POST /webhooks/...`, `GET /healthz`, `GET /readyz`. Every answer is JSON; a refusal says what is wrong in the body
 * and which check failed in the log, and anything unexpected is a 500 with no detail, logged
 * with its cause.
 */
export function httpEndpoints(deps: HttpEndpointsDeps) {
  const { logger } = deps;
  return async (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url);
    if (!path.startsWith(WEBHOOKS)) {
      await serve(req, res, path);
      return;
    }
    // A delivery's trace starts here, and its request's log lines belong to it.
    const { span, context: traced } = startWebhookSpan(req, path);
    const status = await context.with(traced, () => serve(req, res, path));
    endWebhookSpan(span, status);
  };

  /** Answers one request; the status answered. */
  async function serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<number> {
    const started = performance.now();
    let reply: WebhookReply;
    try {
      reply = await dispatch(path, req, res);
    } catch (err) {
      if (err instanceof WebhookRejection) {
        reply = {
          status: err.status,
          body: { error: err.message },
          headers: err.headers,
          log: { ...err.context, reason: err.detail ?? err.message },
        };
      } else {
        logger.error({ err, path }, "unexpected error handling request");
        reply = { status: 500, body: { error: "internal error" }, log: {} };
      }
    }
    // A body refused before it was read whole (too large, an unknown route, rate limited) is not
    // drained: the connection closes after the answer, so that a sender cannot keep the gateway
    // reading what it has already refused.
    const unread = !req.complete;
    if (!res.headersSent) {
      res.writeHead(reply.status, {
        "content-type": "application/json",
        ...reply.headers,
        ...(unread && { connection: "close" }),
      });
      res.end(JSON.stringify(reply.body));
    }
    if (path.startsWith(WEBHOOKS)) {
      const line = {
        method: req.method,
        path,
        status: reply.status,
        durationMs: Math.round(performance.now() - started),
        ...reply.log,
      };
      if (reply.status < 400) logger.info(line, "webhook");
      else logger.warn(line, "webhook refused");
    }
    return reply.status;
  }

  async function dispatch(path: string, req: IncomingMessage, res: ServerResponse): Promise<WebhookReply> {
    if (path === "/healthz") return only(req, "GET", async () => ({ status: 200, body: { status: "ok" }, log: {} }));
    if (path === "/readyz") {
      return only(req, "GET", async () => {
        // The readiness check stops when its asker goes away; a webhook's work does not, once
        // its body is read (what is made durable is acknowledged), so only this has a signal.
        const abort = new AbortController();
        res.once("close", () => abort.abort());
        return (await deps.ready(abort.signal))
          ? { status: 200, body: { status: "ready" }, log: {} }
          : { status: 503, body: { status: "not ready" }, log: {} };
      });
    }
    if (path.startsWith(WEBHOOKS) && path.length > WEBHOOKS.length) {
      return only(req, "POST", () => deps.pipeline.handle(endpointName(path), req));
    }
    throw new WebhookRejection(404, "not found");
  }
}

/**
 * The request target's path; "" (which no endpoint matches) for a target that is not a URL.
 * Node's parser lets some through (absolute forms such as `http://[::1/`), and this runs
 * before the handler's error handling, where a throw would be an unhandled rejection.
 */
function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? "/", "http://gateway").pathname;
  } catch {
    return "";
  }
}

/** The endpoint named by a `/webhooks/...` path; a malformed percent-escape names none. */
function endpointName(path: string): string {
  try {
    return decodeURIComponent(path.slice(WEBHOOKS.length));
  } catch {
    throw new WebhookRejection(404, "not found");
  }
}

function only(req: IncomingMessage, method: string, handle: () => Promise<WebhookReply>): Promise<WebhookReply> {
  if (req.method !== method) throw new WebhookRejection(405, "method not allowed", undefined, { allow: method });
  return handle();
}
