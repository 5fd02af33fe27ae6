import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import type { Event } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { GitHubService } from "../../../../gen/hookmesh/github/v1/github_pb.js";
import { AnswerCache, type AnswerCacheOptions } from "./answer-cache.js";
import type { LabelerStanding } from "./match.js";

export type PermissionClient = Pick<Client<typeof GitHubService>, "getRepositoryPermission">;

export interface LabelerPermissionsOptions extends AnswerCacheOptions {
  /** Deadline of one check, within the gateway's submit deadline (GitHub's is 5 s). */
  timeoutMs: number;
}

/** GitHub's base permissions that can push: what OWNER, MEMBER and COLLABORATOR stand for. */
const WRITE_PERMISSIONS = new Set(["admin", "write"]);

/**
 * Who added a GitHub label, as the `author_association` their permission on the repository
 * stands for: the repository's owner is OWNER; admin, maintain and write (GitHub's base
 * permissions admin and write) are COLLABORATOR; triage, read and none are NONE. A label event
 * carries the issue author's association, never the labeler's, hence the question to GitHub.
 *
 * When the github service cannot answer (down, its breaker open, a dry run without credentials)
 * the standing is unknown and the label rule refuses: the task is IGNORED with that reason
 * rather than the submission failing Unavailable. Failing would send the delivery to the
 * gateway's outbox, which forwards in arrival order, so every provider's deliveries would wait
 * behind this one, and the Unavailable would trip the gateway's breaker on SubmitEvent: an
 * outage of the github service would become an outage of every trigger. Adding the label again
 * once the github service is back starts the task.
 */
export class LabelerPermissions {
  private readonly cache: AnswerCache<LabelerStanding>;

  constructor(
    private readonly github: PermissionClient,
    private readonly options: LabelerPermissionsOptions,
    private readonly logger: Logger,
  ) {
    this.cache = new AnswerCache(options);
  }

  async standingOf(event: Event): Promise<LabelerStanding> {
    const ref = event.subject?.ref;
    const login = event.actor?.login ?? "";
    if (ref?.case !== "github" || !ref.value.owner || !ref.value.repo || login === "") {
      return { unknown: "the event names no repository or no sender" };
    }
    const { owner, repo, installationId } = ref.value;
    if (login.toLowerCase() === owner.toLowerCase()) return { association: "OWNER" };
    const key = `${installationId}/${owner}/${repo}/${login}`.toLowerCase();
    const cached = this.cache.get(key);
    if (cached) return cached;
    const standing = await this.ask(owner, repo, installationId, login);
    // Only answers are kept: an outage must not outlive itself in the cache.
    if ("association" in standing) this.cache.set(key, standing);
    return standing;
  }

  private async ask(owner: string, repo: string, installationId: bigint, login: string): Promise<LabelerStanding> {
    try {
      const res = await this.github.getRepositoryPermission(
        { repository: { owner, repo, installationId }, login },
        { timeoutMs: this.options.timeoutMs },
      );
      if (res.call?.dryRun) return { unknown: "the github service runs dry (no credentials) and cannot check it" };
      return { association: WRITE_PERMISSIONS.has(res.permission) ? "COLLABORATOR" : "NONE" };
    } catch (err) {
      const failure = ConnectError.from(err);
      this.logger.warn(
        { owner, repo, login, code: Code[failure.code], err: failure.rawMessage },
        "could not check a labeler's permission",
      );
      return { unknown: `the github service could not check their permission (${Code[failure.code]})` };
    }
  }
}
