import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import type { Event } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { JiraService } from "../../../../gen/hookmesh/jira/v1/jira_pb.js";
import { AnswerCache, type AnswerCacheOptions } from "./answer-cache.js";
import type { GroupsStanding } from "./match.js";

export type GroupsClient = Pick<Client<typeof JiraService>, "getUserGroups">;

export interface JiraGroupsOptions extends AnswerCacheOptions {
  /** Deadline of one lookup, within the gateway's submit deadline. */
  timeoutMs: number;
}

/**
 * The Jira groups of the account that caused an event, for rules gated by group
 * (`JiraGate.groups`), asked of the jira service and kept a while. When the jira service cannot
 * answer, the groups are unknown and group membership refuses, for the reasons
 * `LabelerPermissions` gives: an IGNORED task with that reason rather than a failed submission
 * that would hold up every provider's deliveries in the gateway's outbox.
 */
export class JiraGroups {
  private readonly cache: AnswerCache<GroupsStanding>;

  constructor(
    private readonly jira: GroupsClient,
    private readonly options: JiraGroupsOptions,
    private readonly logger: Logger,
  ) {
    this.cache = new AnswerCache(options);
  }

  async standingOf(event: Event): Promise<GroupsStanding> {
    const accountId = event.actor?.id ?? "";
    if (accountId === "") return { unknown: "the event names no account" };
    const cached = this.cache.get(accountId);
    if (cached) return cached;
    const standing = await this.ask(accountId);
    if ("groups" in standing) this.cache.set(accountId, standing);
    return standing;
  }

  private async ask(accountId: string): Promise<GroupsStanding> {
    try {
      const res = await this.jira.getUserGroups({ accountId }, { timeoutMs: this.options.timeoutMs });
      if (res.call?.dryRun) return { unknown: "the jira service runs dry (no credentials) and cannot check them" };
      return { groups: res.groups };
    } catch (err) {
      const failure = ConnectError.from(err);
      this.logger.warn(
        { accountId, code: Code[failure.code], err: failure.rawMessage },
        "could not read a Jira account's groups",
      );
      return { unknown: `the jira service could not read them (${Code[failure.code]})` };
    }
  }
}
