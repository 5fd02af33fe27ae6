import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { mapUpstreamError, type ErrorMapper } from "@hookmesh/kit";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { IdempotencyUnavailableError, InvalidRequestError } from "./errors.js";
import type { CallOptions, SentryApi } from "./sentry-api.js";

/** The caller's cancellation and deadline, for the requests a call makes to Sentry. */
const callOptions = (ctx: HandlerContext): CallOptions => ({ signal: ctx.signal, timeoutMs: ctx.timeoutMs() });

export function routes(api: SentryApi) {
  return (router: ConnectRouter) =>
    router.service(SentryService, {
      getIssue: (req, ctx) => api.getIssue(req.issueId, callOptions(ctx)),
      addComment: (req, ctx) => api.addComment(req, callOptions(ctx)),
      updateComment: (req, ctx) => api.updateComment(req, callOptions(ctx)),
      updateIssue: (req, ctx) => api.updateIssue(req, callOptions(ctx)),
    });
}

/** Sentry's answers (UpstreamError), a missing token, and the service's own refusals. */
export const mapSentryError: ErrorMapper = (err) => {
  if (err instanceof InvalidRequestError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof IdempotencyUnavailableError) return new ConnectError(err.message, Code.Unavailable, undefined, undefined, err.cause);
  return mapUpstreamError(err);
};
