import type { ConnectRouter } from "@connectrpc/connect";
import { callerOf } from "@hookmesh/kit";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import type { JiraApi } from "./jira-api.js";

export function routes(api: JiraApi) {
  return (router: ConnectRouter) =>
    router.service(JiraService, {
      addComment: (req, ctx) => api.addComment(req, callerOf(ctx)),
      updateComment: (req, ctx) => api.updateComment(req, callerOf(ctx)),
      getIssue: (req, ctx) => api.getIssue(req, callerOf(ctx)),
      getUserGroups: (req, ctx) => api.getUserGroups(req, callerOf(ctx)),
      transitionIssue: (req, ctx) => api.transitionIssue(req, callerOf(ctx)),
    });
}
