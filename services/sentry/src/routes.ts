import type { ConnectRouter } from "@connectrpc/connect";
import { callerOf } from "@hookmesh/kit";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import type { SentryApi } from "./sentry-api.js";

export function routes(api: SentryApi) {
  return (router: ConnectRouter) =>
    router.service(SentryService, {
      getIssue: (req, ctx) => api.getIssue(req, callerOf(ctx)),
      addComment: (req, ctx) => api.addComment(req, callerOf(ctx)),
      updateComment: (req, ctx) => api.updateComment(req, callerOf(ctx)),
      updateIssue: (req, ctx) => api.updateIssue(req, callerOf(ctx)),
    });
}
