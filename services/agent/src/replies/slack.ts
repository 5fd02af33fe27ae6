import type { Client } from "@connectrpc/connect";
import type { SlackSubject } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { SlackService } from "../../../../gen/hookmesh/slack/v1/slack_pb.js";
import type { ReplyTarget } from "./replier.js";

/** Replies in the thread of the triggering message (its own thread when it started none). */
export function slackTarget(client: Client<typeof SlackService>, subject: SlackSubject): ReplyTarget | undefined {
  const channel = subject.channelId;
  const threadTs = subject.threadTs || subject.messageTs;
  if (!channel || !threadTs) return undefined;
  return {
    provider: "slack",
    createName: "slack.PostMessage",
    updateName: "slack.UpdateMessage",
    async create(text, idempotencyKey) {
      const res = await client.postMessage({ channel, threadTs, text, idempotencyKey });
      return { id: res.ts, call: res.call };
    },
    async update(ts, text) {
      const res = await client.updateMessage({ channel, ts, text });
      return { id: ts, call: res.call };
    },
    react: {
      name: "slack.AddReaction",
      call: async () => {
        const res = await client.addReaction({ channel, timestamp: subject.messageTs || threadTs, name: "eyes" });
        return { id: subject.messageTs || threadTs, call: res.call };
      },
    },
  };
}
