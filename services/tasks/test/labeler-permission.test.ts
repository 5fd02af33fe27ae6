import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { memoryLogger } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { ActorSchema, EventSchema, Provider, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  GetRepositoryPermissionRequestSchema,
  GetRepositoryPermissionResponseSchema,
} from "../../../gen/hookmesh/github/v1/github_pb.js";
import { LabelerPermissions, type PermissionClient } from "../src/routing/labeler-permission.js";

function labeled(login: string, repo = "widgets") {
  return create(EventSchema, {
    provider: Provider.GITHUB,
    eventType: "issues",
    action: "labeled",
    label: "hookmesh",
    actor: create(ActorSchema, { login, association: "OWNER" }),
    subject: create(SubjectSchema, {
      ref: { case: "github", value: { owner: "acme", repo, number: 7n, installationId: 42n } },
    }),
  });
}

/** A github service whose answers are `permissions` by login, or `failure` when set. */
function github(permissions: Record<string, string>) {
  const asked: string[] = [];
  const state = { failure: undefined as ConnectError | undefined, dryRun: false };
  const client: PermissionClient = {
    getRepositoryPermission: async (init) => {
      const req = create(GetRepositoryPermissionRequestSchema, init);
      asked.push(`${req.repository?.installationId}/${req.repository?.owner}/${req.repository?.repo}:${req.login}`);
      if (state.failure) throw state.failure;
      return create(GetRepositoryPermissionResponseSchema, {
        permission: state.dryRun ? "" : (permissions[req.login] ?? "read"),
        call: { dryRun: state.dryRun },
      });
    },
  };
  return { client, asked, state };
}

function permissions(client: PermissionClient, clock = { now: 0 }, maxEntries = 100) {
  return new LabelerPermissions(
    client,
    { ttlMs: 60_000, maxEntries, timeoutMs: 1_000, now: () => clock.now },
    memoryLogger().logger,
  );
}

describe("a labeler's standing, from their permission on the repository", () => {
  it("maps admin and write to COLLABORATOR, read and none to NONE, and the repository's owner to OWNER without asking", async () => {
    const gh = github({ admin: "admin", maintainer: "write", triager: "read", stranger: "none" });
    const labelers = permissions(gh.client);
    expect(await labelers.standingOf(labeled("admin"))).toEqual({ association: "COLLABORATOR" });
    expect(await labelers.standingOf(labeled("maintainer"))).toEqual({ association: "COLLABORATOR" });
    expect(await labelers.standingOf(labeled("triager"))).toEqual({ association: "NONE" });
    expect(await labelers.standingOf(labeled("stranger"))).toEqual({ association: "NONE" });
    expect(await labelers.standingOf(labeled("ACME"))).toEqual({ association: "OWNER" });
    expect(gh.asked).toEqual([
      "42/acme/widgets:admin",
      "42/acme/widgets:maintainer",
      "42/acme/widgets:triager",
      "42/acme/widgets:stranger",
    ]);
  });

  it("reuses an answer for the cache's time, per repository, then asks again", async () => {
    const gh = github({ maintainer: "write" });
    const clock = { now: 0 };
    const labelers = permissions(gh.client, clock);
    await labelers.standingOf(labeled("maintainer"));
    await labelers.standingOf(labeled("maintainer"));
    await labelers.standingOf(labeled("maintainer", "gadgets"));
    clock.now = 60_001;
    await labelers.standingOf(labeled("maintainer"));
    expect(gh.asked).toEqual([
      "42/acme/widgets:maintainer",
      "42/acme/gadgets:maintainer",
      "42/acme/widgets:maintainer",
    ]);
  });

  it("keeps at most maxEntries answers, dropping the oldest", async () => {
    const gh = github({});
    const labelers = permissions(gh.client, { now: 0 }, 2);
    for (const login of ["a", "b", "c", "a"]) await labelers.standingOf(labeled(login));
    expect(gh.asked.map((key) => key.split(":")[1])).toEqual(["a", "b", "c", "a"]);
  });

  it("is unknown, and not remembered, when the github service cannot answer or runs dry", async () => {
    const gh = github({ maintainer: "write" });
    const labelers = permissions(gh.client);
    gh.state.failure = new ConnectError("breaker open", Code.Unavailable);
    expect(await labelers.standingOf(labeled("maintainer"))).toEqual({
      unknown: "the github service could not check their permission (Unavailable)",
    });
    gh.state.failure = undefined;
    gh.state.dryRun = true;
    expect(await labelers.standingOf(labeled("maintainer"))).toEqual({
      unknown: "the github service runs dry (no credentials) and cannot check it",
    });
    gh.state.dryRun = false;
    expect(await labelers.standingOf(labeled("maintainer"))).toEqual({ association: "COLLABORATOR" });
    expect(gh.asked).toHaveLength(3);
  });

  it("is unknown for an event without a repository or a sender, without asking", async () => {
    const gh = github({});
    const event = labeled("");
    expect(await permissions(gh.client).standingOf(event)).toEqual({
      unknown: "the event names no repository or no sender",
    });
    expect(gh.asked).toEqual([]);
  });
});
