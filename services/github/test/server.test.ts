import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { serverCallInterceptor } from "@hookmesh/kit";
import { callError } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { GitHubService, ReactionTarget } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { mapGitHubError } from "../src/errors.js";
import { routes } from "../src/routes.js";
import { error } from "./fake-github.js";
import { type Harness, REPO, serve, setup, TOKEN } from "./helpers.js";

describe("github service over gRPC", () => {
  let h: Harness;
  let server: Awaited<ReturnType<typeof serve>> | undefined;
  afterEach(async () => {
    await h?.close();
  });

  it("serves the seven RPCs against GitHub, with App auth", async () => {
    h = await setup({ auth: "app" });
    server = await serve(h);
    h.fake.addIssue("acme", "widgets", 7);
    h.fake.addPull("acme", "widgets", 8);
    const { client } = server;

    const issue = await client.getIssue({ repository: REPO, number: 7n });
    const pr = await client.getPullRequest({ repository: REPO, number: 8n });
    const created = await client.createComment({
      repository: REPO,
      number: 7n,
      body: "Working on it (task t-1)",
      idempotencyKey: "t-1:ack",
    });
    const id = created.comment!.id;
    const reacted = await client.addReaction({
      repository: REPO,
      target: ReactionTarget.ISSUE,
      number: 7n,
      content: "eyes",
    });
    const updated = await client.updateComment({ repository: REPO, commentId: id, body: "Done" });
    const clone = await client.createCloneToken({ repository: REPO });
    const deleted = await client.deleteComment({ repository: REPO, commentId: id });

    expect(issue.issue).toMatchObject({
      number: 7n,
      author: "octocat",
      labels: ["bug", "good first issue"],
      pullRequest: false,
    });
    expect(pr.pullRequest).toMatchObject({ number: 8n, headRef: "fix-empty-config", baseRef: "main", draft: true });
    expect(created.comment).toMatchObject({ body: "Working on it (task t-1)" });
    expect(reacted.reactionId).toBeGreaterThan(0n);
    expect(updated.comment).toMatchObject({ id, body: "Done" });
    expect(clone.cloneUrl).toBe(`http://x-access-token:${clone.token}@${h.fake.host}/acme/widgets.git`);
    expect(clone.expireTime).toBeDefined();
    expect(deleted.call?.request?.method).toBe("DELETE");
    expect(h.fake.lines()).toEqual([
      "POST /app/installations/777/access_tokens",
      "GET /repos/acme/widgets/issues/7",
      "GET /repos/acme/widgets/pulls/8",
      'POST /repos/acme/widgets/issues/7/comments {"body":"Working on it (task t-1)"}',
      'POST /repos/acme/widgets/issues/7/reactions {"content":"eyes"}',
      `PATCH /repos/acme/widgets/issues/comments/${id} {"body":"Done"}`,
      'POST /app/installations/777/access_tokens {"repositories":["widgets"],"permissions":{"contents":"read"}}',
      `DELETE /repos/acme/widgets/issues/comments/${id}`,
    ]);
    for (const res of [issue, pr, created, reacted, updated, clone, deleted])
      expect(res.call).toMatchObject({ dryRun: false, replayed: false });
  });

  it("replays a keyed comment instead of posting it twice", async () => {
    h = await setup();
    server = await serve(h);
    h.fake.addIssue("acme", "widgets", 7);
    const first = await server.client.createComment({
      repository: REPO,
      number: 7n,
      body: "ack",
      idempotencyKey: "t-1:ack",
    });
    const again = await server.client.createComment({
      repository: REPO,
      number: 7n,
      body: "ack",
      idempotencyKey: "t-1:ack",
    });
    expect(h.fake.received).toHaveLength(1);
    expect(again.comment).toEqual(first.comment);
    expect(again.call).toMatchObject({ replayed: true, request: first.call?.request });
  });

  it.each([
    [error(401, "Bad credentials"), "Unauthenticated"],
    [error(403, "Resource not accessible by personal access token"), "PermissionDenied"],
    [error(403, "Unable to create comment because issue is locked."), "FailedPrecondition"],
    [error(404, "Not Found"), "NotFound"],
    [
      {
        status: 422,
        body: {
          message: "Validation Failed",
          errors: [{ resource: "IssueComment", code: "missing_field", field: "body" }],
        },
      },
      "InvalidArgument",
    ],
    [{ status: 429, headers: { "retry-after": "3600" }, body: { message: "Too many requests" } }, "ResourceExhausted"],
    [
      {
        status: 403,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000) + 3600) },
        body: { message: "API rate limit exceeded" },
      },
      "ResourceExhausted",
    ],
    [{ status: 500, body: { message: "Server Error" } }, "Unavailable"],
  ])("answers GitHub's %j with %s", async (answer, code) => {
    h = await setup({ env: { GITHUB_MAX_ATTEMPTS: "1" } });
    server = await serve(h);
    h.fake.answer(answer);
    const err = await callError(server.client.createComment({ repository: REPO, number: 7n, body: "x" }));
    expect(Code[err.code]).toBe(code);
    expect(err.message).not.toContain(TOKEN);
    expect(h.fake.received).toHaveLength(1);
  });

  it("answers DeadlineExceeded when GitHub hangs, and honours the caller's deadline", async () => {
    h = await setup({ env: { GITHUB_MAX_ATTEMPTS: "1" } });
    server = await serve(h);
    h.fake.answer("hang");
    expect((await callError(server.client.getIssue({ repository: REPO, number: 7n }))).code).toBe(
      Code.DeadlineExceeded,
    );

    await h.close();
    h = await setup({ env: { GITHUB_TIMEOUT_MS: "10000" } });
    server = await serve(h);
    h.fake.answer("hang");
    const started = Date.now();
    const err = await callError(server.client.getIssue({ repository: REPO, number: 7n }, { timeoutMs: 300 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("fails fast with Unavailable once GitHub's outage opens the breaker", async () => {
    h = await setup({
      env: { GITHUB_MAX_ATTEMPTS: "1" },
      upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } },
    });
    server = await serve(h);
    h.fake.answer({ status: 503 }, { status: 503 }, { status: 503 });
    for (let i = 0; i < 3; i++)
      expect((await callError(server.client.getIssue({ repository: REPO, number: 7n }))).code).toBe(Code.Unavailable);
    const err = await callError(server.client.getIssue({ repository: REPO, number: 7n }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("github is failing; circuit open");
    expect(h.fake.received).toHaveLength(3);
  });

  it("answers FailedPrecondition naming what to set: no credentials, no installation, a clone token with a personal token", async () => {
    h = await setup({ auth: "none" });
    server = await serve(h);
    const none = await callError(server.client.createComment({ repository: REPO, number: 7n, body: "x" }));
    expect(none.code).toBe(Code.FailedPrecondition);
    expect(none.rawMessage).toMatch(/^GITHUB_TOKEN is not set \(nor GITHUB_APP_ID \+ GITHUB_APP_PRIVATE_KEY\)/);
    await h.close();

    h = await setup({ auth: "app" });
    server = await serve(h);
    const noInstallation = await callError(
      server.client.getIssue({ repository: { owner: "acme", repo: "widgets" }, number: 7n }),
    );
    expect(noInstallation.code).toBe(Code.FailedPrecondition);
    expect(noInstallation.rawMessage).toContain("repository.installation_id is required with GitHub App auth");
    await h.close();

    h = await setup({ auth: "token" });
    server = await serve(h);
    const clone = await callError(server.client.createCloneToken({ repository: REPO }));
    expect(clone.code).toBe(Code.FailedPrecondition);
    expect(clone.rawMessage).toContain("CreateCloneToken needs GitHub App auth");
    expect(h.fake.received).toHaveLength(0);
  });

  it("answers InvalidArgument for a malformed request", async () => {
    h = await setup();
    server = await serve(h);
    const err = await callError(
      server.client.addReaction({ repository: REPO, target: ReactionTarget.ISSUE, number: 7n, content: ":eyes:" }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("content must be one of +1, -1, laugh, confused, heart, hooray, rocket, eyes");
    expect(h.fake.received).toHaveLength(0);
  });

  it("in a dry run, acknowledges and edits the acknowledgment into the answer, sending nothing", async () => {
    h = await setup({ auth: "none", env: { HOOKMESH_DRY_RUN: "1" } });
    server = await serve(h);
    const ack = await server.client.createComment({
      repository: REPO,
      number: 7n,
      body: "On it",
      idempotencyKey: "t-1:ack",
    });
    expect(ack.call).toMatchObject({
      dryRun: true,
      replayed: false,
      request: { method: "POST", url: `${h.fake.url}/repos/acme/widgets/issues/7/comments`, body: '{"body":"On it"}' },
    });
    const final = await server.client.updateComment({
      repository: REPO,
      commentId: ack.comment!.id,
      body: "The answer",
    });
    expect(final.call).toMatchObject({
      dryRun: true,
      request: {
        method: "PATCH",
        url: `${h.fake.url}/repos/acme/widgets/issues/comments/${ack.comment!.id}`,
        body: '{"body":"The answer"}',
      },
    });
    expect(h.fake.received).toHaveLength(0);
    expect(h.lines().filter((l) => l.includes("dry run: request not sent to GitHub"))).toHaveLength(2);
  });

  it("serves health and never logs credentials", async () => {
    h = await setup({ auth: "app" });
    server = await serve(h);
    h.fake.addIssue("acme", "widgets", 7);
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
    expect((await health.check({ service: GitHubService.typeName })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    const clone = await server.client.createCloneToken({ repository: REPO });
    await server.client.getIssue({ repository: REPO, number: 7n });
    await callError(server.client.getIssue({ repository: REPO, number: 404n }));
    const logged = h.lines().join("\n");
    expect(logged).toContain('"procedure":"/hookmesh.github.v1.GitHubService/CreateCloneToken"');
    for (const secret of [clone.token, ...h.fake.installationTokens.keys()]) expect(logged).not.toContain(secret);
  });

  it("routes translate and delegate (in-memory transport)", async () => {
    h = await setup({ auth: "none", env: { HOOKMESH_DRY_RUN: "1" } });
    const transport = createRouterTransport(routes(h.api), {
      router: { interceptors: [serverCallInterceptor(h.logger, mapGitHubError)] },
    });
    const client = createClient(GitHubService, transport);
    const res = await client.getPullRequest({ repository: REPO, number: 8n });
    expect(res.call?.request).toMatchObject({ method: "GET", url: `${h.fake.url}/repos/acme/widgets/pulls/8` });
    const err = await callError(client.updateComment({ repository: REPO, commentId: 0n, body: "x" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("comment_id is required (a positive number)");
  });
});
