import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "@hookmesh/kit";
import type { GitHubWebhook, WebhookReply } from "./github/webhook.js";
import { WebhookRejection } from "./http-errors.js";

export interface HttpRoutesDeps {
  github: GitHubWebhook;
  /** True when the gateway can make deliveries durable right now. */
  ready: (signal: AbortSignal) => Promise<boolean>;
  logger: Logger;
}

type Handler = (req: IncomingMessage, signal: AbortSignal) => Promise<WebhookReply>;

/**
 * The gateway's HTTP surface as a plain table of routes. Every answer is JSON; a refusal
 * says what is wrong in the body and which check failed in the log, and anything unexpected
 * is a 500 with no detail, logged with its cause.
 */
export function httpRoutes(deps: HttpRoutesDeps) {
  const { logger } = deps;
  const routes: Record<string, Partial<Record<string, Handler>>> = {
    "/webhooks/github": { POST: (req, signal) => deps.github.handle(req, signal) },
    "/healthz": { GET: async () => ({ status: 200, body: { status: "ok" }, log: {} }) },
    "/readyz": {
      GET: async (_req, signal) =>
        (await deps.ready(signal))
          ? { status: 200, body: { status: "ready" }, log: {} }
          : { status: 503, body: { status: "not ready" }, log: {} },
    },
  };

  return async (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const path = new URL(req.url ?? "/", "http://gateway").pathname;
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    let reply: WebhookReply;
    let headers: Record<string, string> = {};
    try {
      const methods = routes[path];
      const handler = methods?.[req.method ?? ""];
      if (!methods) throw new WebhookRejection(404, "not found");
      if (!handler) throw new WebhookRejection(405, "method not allowed", undefined, { allow: Object.keys(methods).join(", ") });
      reply = await handler(req, abort.signal);
    } catch (err) {
      if (err instanceof WebhookRejection) {
        reply = { status: err.status, body: { error: err.message }, log: { ...err.context, reason: err.detail ?? err.message } };
        headers = err.headers;
      } else {
        logger.error({ err, path }, "unexpected error handling request");
        reply = { status: 500, body: { error: "internal error" }, log: {} };
      }
    }
    if (!res.headersSent) {
      res.writeHead(reply.status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(reply.body));
    }
    // A refused body may still be arriving; drain it so the connection can be reused.
    req.resume();
    if (path !== "/healthz" && path !== "/readyz") {
      const line = { method: req.method, path, status: reply.status, durationMs: Math.round(performance.now() - started), ...reply.log };
      if (reply.status < 400) logger.info(line, "webhook");
      else logger.warn(line, "webhook refused");
    }
  };
}
