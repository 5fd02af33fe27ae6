import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { mapUpstreamError, type ErrorMapper } from "@hookmesh/kit";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { InvalidRequestError, TransitionUnavailableError } from "./errors.js";
import type { CallContext, JiraApi } from "./jira-api.js";

export function routes(api: JiraApi) {
  return (router: ConnectRouter) =>
    router.service(JiraService, {
      addComment: (req, ctx) => api.addComment(req, callContext(ctx)),
      updateComment: (req, ctx) => api.updateComment(req, callContext(ctx)),
      getIssue: (req, ctx) => api.getIssue(req, callContext(ctx)),
      transitionIssue: (req, ctx) => api.transitionIssue(req, callContext(ctx)),
    });
}

/** The caller's cancellation and deadline, for every request made to Jira on its behalf. */
function callContext(ctx: HandlerContext): CallContext {
  const timeoutMs = ctx.timeoutMs();
  return { signal: ctx.signal, ...(timeoutMs !== undefined && { deadline: Date.now() + timeoutMs }) };
}

export const mapJiraError: ErrorMapper = (err) => {
  if (err instanceof InvalidRequestError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof TransitionUnavailableError) return new ConnectError(err.message, Code.FailedPrecondition);
  return mapUpstreamError(err);
};
