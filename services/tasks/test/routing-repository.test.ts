import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EventSchema, Provider, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { AgentProfileSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { resolveRepository } from "../src/routing/repository.js";

function profile(workspace: MessageInitShape<typeof AgentProfileSchema>["workspace"]) {
  return create(AgentProfileSchema, { workspace });
}

const pullRequestComment = create(EventSchema, {
  provider: Provider.GITHUB,
  subject: create(SubjectSchema, {
    ref: {
      case: "github",
      value: { owner: "octo", repo: "hello", number: 12n, pullRequest: true, installationId: 42n },
    },
  }),
});

function jira(issueKey: string) {
  return create(EventSchema, {
    provider: Provider.JIRA,
    subject: create(SubjectSchema, { ref: { case: "jira", value: { issueKey } } }),
  });
}

function sentry(organizationSlug: string, projectSlug: string) {
  return create(EventSchema, {
    provider: Provider.SENTRY,
    subject: create(SubjectSchema, { ref: { case: "sentry", value: { organizationSlug, projectSlug, issueId: "1" } } }),
  });
}

describe("resolveRepository: what a task checks out, decided at routing", () => {
  it("is nothing unless the profile's workspace is enabled", () => {
    expect(resolveRepository(profile(undefined), pullRequestComment)).toBeUndefined();
    expect(resolveRepository(profile({ enabled: false }), pullRequestComment)).toBeUndefined();
  });

  it("is a GitHub event's own repository, a pull request by number, with the event's installation", () => {
    expect(resolveRepository(profile({ enabled: true }), pullRequestComment)).toMatchObject({
      owner: "octo",
      repo: "hello",
      ref: "",
      pullRequestNumber: 12n,
      installationId: 42n,
    });
    const issue = create(EventSchema, {
      provider: Provider.GITHUB,
      subject: create(SubjectSchema, { ref: { case: "github", value: { owner: "octo", repo: "hello", number: 3n } } }),
    });
    expect(resolveRepository(profile({ enabled: true }), issue)).toMatchObject({ pullRequestNumber: 0n, ref: "" });
  });

  it("maps a Jira project key or a Sentry project to its repository, else takes the profile's, installation to be looked up", () => {
    const workspace = {
      enabled: true,
      repository: { owner: "acme", repo: "monolith", ref: "develop" },
      repositories: [
        { key: "PAY", repository: { owner: "acme", repo: "payments" } },
        { key: "acme/web", repository: { owner: "acme", repo: "web-app" } },
        { key: "api", repository: { owner: "acme", repo: "api" } },
      ],
    };
    expect(resolveRepository(profile(workspace), jira("PAY-17"))).toMatchObject({
      owner: "acme",
      repo: "payments",
      installationId: 0n,
    });
    expect(resolveRepository(profile(workspace), jira("OPS-1"))).toMatchObject({ repo: "monolith", ref: "develop" });
    expect(resolveRepository(profile(workspace), sentry("acme", "web"))).toMatchObject({ repo: "web-app" });
    expect(resolveRepository(profile(workspace), sentry("other-org", "api"))).toMatchObject({ repo: "api" });
    expect(resolveRepository(profile({ ...workspace, repository: undefined }), jira("OPS-1"))).toBeUndefined();
  });
});
