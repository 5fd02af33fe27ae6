import type { ConnectRouter } from "@connectrpc/connect";
import { callerOf } from "@hookmesh/kit";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import type { GitHubApi } from "./github-api.js";

export function routes(api: GitHubApi) {
  return (router: ConnectRouter) =>
    router.service(GitHubService, {
      createComment: (req, ctx) => api.createComment(req, callerOf(ctx)),
      updateComment: (req, ctx) => api.updateComment(req, callerOf(ctx)),
      deleteComment: (req, ctx) => api.deleteComment(req, callerOf(ctx)),
      addReaction: (req, ctx) => api.addReaction(req, callerOf(ctx)),
      getIssue: (req, ctx) => api.getIssue(req, callerOf(ctx)),
      getPullRequest: (req, ctx) => api.getPullRequest(req, callerOf(ctx)),
      getRepositoryPermission: (req, ctx) => api.getRepositoryPermission(req, callerOf(ctx)),
      createCloneToken: (req, ctx) => api.createCloneToken(req, callerOf(ctx)),
      publishChanges: (req, ctx) => api.publishChanges(req, callerOf(ctx)),
    });
}
