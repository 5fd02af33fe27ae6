import type { ConnectRouter } from "@connectrpc/connect";
import { callerOf } from "@hookmesh/kit";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import type { SlackApi } from "./slack-api.js";

export function routes(api: SlackApi) {
  return (router: ConnectRouter) =>
    router.service(SlackService, {
      postMessage: (req, ctx) => api.postMessage(req, callerOf(ctx)),
      updateMessage: (req, ctx) => api.updateMessage(req, callerOf(ctx)),
      addReaction: (req, ctx) => api.addReaction(req, callerOf(ctx)),
    });
}
