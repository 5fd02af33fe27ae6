import type { ConnectRouter } from "@connectrpc/connect";
import { callerOf } from "@hookmesh/kit";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import type { SlackMessages } from "./messages.js";

export function routes(slack: SlackMessages) {
  return (router: ConnectRouter) =>
    router.service(SlackService, {
      postMessage: (req, ctx) => slack.postMessage(req, callerOf(ctx)),
      updateMessage: (req, ctx) => slack.updateMessage(req, callerOf(ctx)),
      addReaction: (req, ctx) => slack.addReaction(req, callerOf(ctx)),
    });
}
