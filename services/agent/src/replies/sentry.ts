import type { Client } from "@connectrpc/connect";
import type { SentrySubject } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { SentryService } from "../../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import type { ReplyTarget } from "./replier.js";

/** Notes on the Sentry issue. Sentry has no reactions: in reaction mode only the answer is posted. */
export function sentryTarget(client: Client<typeof SentryService>, subject: SentrySubject): ReplyTarget | undefined {
  const issueId = subject.issueId;
  if (!issueId) return undefined;
  return {
    provider: "sentry",
    createName: "sentry.AddComment",
    updateName: "sentry.UpdateComment",
    async create(text, idempotencyKey) {
      const res = await client.addComment({ issueId, text, idempotencyKey });
      return { id: res.comment?.id ?? "", call: res.call };
    },
    async update(commentId, text) {
      const res = await client.updateComment({ issueId, commentId, text });
      return { id: commentId, call: res.call };
    },
  };
}
