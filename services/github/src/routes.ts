import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { mapUpstreamError, type ErrorMapper } from "@hookmesh/kit";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import type { CallOptions } from "./auth.js";
import { AuthPreconditionError, IdempotencyUnavailableError, InvalidCredentialError, InvalidRequestError } from "./errors.js";
import type { GitHubApi } from "./github-api.js";

/** The caller's cancellation and deadline, for the requests a call makes to GitHub. */
const callOptions = (ctx: HandlerContext): CallOptions => ({ signal: ctx.signal, timeoutMs: ctx.timeoutMs() });

export function routes(api: GitHubApi) {
  return (router: ConnectRouter) =>
    router.service(GitHubService, {
      createComment: (req, ctx) => api.createComment(req, callOptions(ctx)),
      updateComment: (req, ctx) => api.updateComment(req, callOptions(ctx)),
      deleteComment: (req, ctx) => api.deleteComment(req, callOptions(ctx)),
      addReaction: (req, ctx) => api.addReaction(req, callOptions(ctx)),
      getIssue: (req, ctx) => api.getIssue(req, callOptions(ctx)),
      getPullRequest: (req, ctx) => api.getPullRequest(req, callOptions(ctx)),
      createCloneToken: (req, ctx) => api.createCloneToken(req, callOptions(ctx)),
    });
}

/** GitHub's answers (UpstreamError), missing or unusable credentials, and the service's own refusals. */
export const mapGitHubError: ErrorMapper = (err) => {
  if (err instanceof InvalidRequestError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof AuthPreconditionError || err instanceof InvalidCredentialError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof IdempotencyUnavailableError) return new ConnectError(err.message, Code.Unavailable, undefined, undefined, err.cause);
  return mapUpstreamError(err);
};
