import type { Client } from "@connectrpc/connect";
import type { GitHubSubject } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import { type GitHubService, ReactionTarget } from "../../../../gen/hookmesh/github/v1/github_pb.js";
import type { ReplyTarget } from "./replier.js";

/** Comments on the issue or pull request; reacts on the triggering comment, or on the issue. */
export function githubTarget(client: Client<typeof GitHubService>, subject: GitHubSubject): ReplyTarget | undefined {
  if (!subject.owner || !subject.repo || subject.number <= 0n) return undefined;
  const repository = { owner: subject.owner, repo: subject.repo, installationId: subject.installationId };
  return {
    provider: "github",
    createName: "github.CreateComment",
    updateName: "github.UpdateComment",
    async create(body, idempotencyKey) {
      const res = await client.createComment({ repository, number: subject.number, body, idempotencyKey });
      return { id: String(res.comment?.id ?? ""), call: res.call };
    },
    async update(id, body) {
      const res = await client.updateComment({ repository, commentId: BigInt(id), body });
      return { id, call: res.call };
    },
    react: {
      name: "github.AddReaction",
      call: async () => {
        const onComment = subject.commentId > 0n;
        const res = await client.addReaction({
          repository,
          target: onComment ? ReactionTarget.ISSUE_COMMENT : ReactionTarget.ISSUE,
          number: subject.number,
          commentId: subject.commentId,
          content: "eyes",
        });
        return { id: String(res.reactionId), call: res.call };
      },
    },
  };
}
