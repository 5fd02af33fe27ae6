import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { memoryLogger } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { ActorSchema, EventSchema, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { GetUserGroupsRequestSchema, GetUserGroupsResponseSchema } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { type GroupsClient, JiraGroups } from "../src/routing/jira-groups.js";

const commentBy = (id: string) =>
  create(EventSchema, { provider: Provider.JIRA, eventType: "comment_created", actor: create(ActorSchema, { id }) });

describe("a Jira account's groups, from the jira service", () => {
  it("asks once per account within the cache's time; an outage or a dry run is unknown and not remembered", async () => {
    const asked: string[] = [];
    const state = { failure: undefined as ConnectError | undefined, dryRun: false };
    const client: GroupsClient = {
      getUserGroups: async (init) => {
        const { accountId } = create(GetUserGroupsRequestSchema, init);
        asked.push(accountId);
        if (state.failure) throw state.failure;
        return create(GetUserGroupsResponseSchema, {
          groups: state.dryRun ? [] : [`${accountId}-team`],
          call: { dryRun: state.dryRun },
        });
      },
    };
    const clock = { now: 0 };
    const groups = new JiraGroups(
      client,
      { ttlMs: 60_000, maxEntries: 100, timeoutMs: 1_000, now: () => clock.now },
      memoryLogger().logger,
    );
    expect(await groups.standingOf(commentBy("a"))).toEqual({ groups: ["a-team"] });
    expect(await groups.standingOf(commentBy("a"))).toEqual({ groups: ["a-team"] });
    state.failure = new ConnectError("down", Code.Unavailable);
    expect(await groups.standingOf(commentBy("b"))).toEqual({
      unknown: "the jira service could not read them (Unavailable)",
    });
    state.failure = undefined;
    state.dryRun = true;
    expect(await groups.standingOf(commentBy("b"))).toEqual({
      unknown: "the jira service runs dry (no credentials) and cannot check them",
    });
    state.dryRun = false;
    clock.now = 60_001;
    expect(await groups.standingOf(commentBy("a"))).toEqual({ groups: ["a-team"] });
    expect(await groups.standingOf(commentBy(""))).toEqual({ unknown: "the event names no account" });
    expect(asked).toEqual(["a", "b", "b", "a"]);
  });
});
