import type { Client } from "@connectrpc/connect";
import type { JiraSubject } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { JiraService } from "../../../../gen/hookmesh/jira/v1/jira_pb.js";
import type { ReplyTarget } from "./replier.js";

/** Comments on the issue. Jira has no reactions: in reaction mode only the answer is posted. */
export function jiraTarget(client: Client<typeof JiraService>, subject: JiraSubject): ReplyTarget | undefined {
  const issueKey = subject.issueKey;
  if (!issueKey) return undefined;
  return {
    provider: "jira",
    createName: "jira.AddComment",
    updateName: "jira.UpdateComment",
    async create(body, idempotencyKey) {
      const res = await client.addComment({ issueKey, body, idempotencyKey });
      return { id: res.comment?.id ?? "", call: res.call };
    },
    async update(commentId, body) {
      const res = await client.updateComment({ issueKey, commentId, body });
      return { id: commentId, call: res.call };
    },
  };
}
