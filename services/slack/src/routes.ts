import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import type { CallOptions, SlackMessages } from "./messages.js";

/** The caller's cancellation and deadline, for the calls to Slack. */
function callOptions(ctx: HandlerContext): CallOptions {
  const timeoutMs = ctx.timeoutMs();
  return { signal: ctx.signal, ...(timeoutMs !== undefined && { timeoutMs }) };
}

export function routes(slack: SlackMessages) {
  return (router: ConnectRouter) =>
    router.service(SlackService, {
      postMessage: (req, ctx) => slack.postMessage(req, callOptions(ctx)),
      updateMessage: (req, ctx) => slack.updateMessage(req, callOptions(ctx)),
      addReaction: (req, ctx) => slack.addReaction(req, callOptions(ctx)),
    });
}
