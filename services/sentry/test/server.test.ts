import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mapUpstreamError, serverCallInterceptor } from "@hookmesh/kit";
import { callError } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { IssueStatus, SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { routes } from "../src/routes.js";
import { type Harness, serve, setup, TOKEN } from "./helpers.js";

describe("sentry service over gRPC", () => {
  let h: Harness;
  let server: Awaited<ReturnType<typeof serve>>;
  afterEach(async () => {
    await h?.close();
  });

  it("serves the four RPCs against Sentry", async () => {
    h = await setup();
    server = await serve(h);
    h.fake.addIssue("42");
    const { client } = server;

    const got = await client.getIssue({ issueId: "42" });
    const added = await client.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-1:ack" });
    const edited = await client.updateComment({ issueId: "42", commentId: added.comment!.id, text: "Done" });
    const updated = await client.updateIssue({ issueId: "42", status: IssueStatus.RESOLVED, assignee: "user:88" });

    expect(got.issue).toMatchObject({
      id: "42",
      projectSlug: "pump-station",
      status: IssueStatus.UNRESOLVED,
      count: 1243n,
    });
    expect(added.comment).toMatchObject({ id: "1000", text: "Working on it" });
    expect(edited.comment).toMatchObject({ id: "1000", text: "Done" });
    expect(updated.issue).toMatchObject({ status: IssueStatus.RESOLVED, assignee: "jane@example.com" });
    expect(h.fake.received.map((r) => `${r.method} ${r.path} ${r.text}`)).toEqual([
      "GET /issues/42/ ",
      'POST /issues/42/comments/ {"text":"Working on it"}',
      'PUT /issues/42/comments/1000/ {"text":"Done"}',
      'PUT /issues/42/ {"status":"resolved","assignedTo":"user:88"}',
    ]);
    for (const res of [got, added, edited, updated]) expect(res.call).toMatchObject({ dryRun: false, replayed: false });
  });

  it("replays a keyed comment instead of posting it twice", async () => {
    h = await setup();
    server = await serve(h);
    h.fake.addIssue("42");
    const first = await server.client.addComment({
      issueId: "42",
      text: "Working on it",
      idempotencyKey: "task-1:ack",
    });
    const again = await server.client.addComment({
      issueId: "42",
      text: "Working on it",
      idempotencyKey: "task-1:ack",
    });
    expect(h.fake.received).toHaveLength(1);
    expect(again.comment).toEqual(first.comment);
    expect(again.call?.replayed).toBe(true);
  });

  it.each([
    [{ status: 401, body: { detail: "Invalid token" } }, "Unauthenticated"],
    [{ status: 403, body: { detail: "You do not have permission to perform this action." } }, "PermissionDenied"],
    [{ status: 404, body: { detail: "The requested resource does not exist" } }, "NotFound"],
    [{ status: 422, body: { detail: "Invalid" } }, "InvalidArgument"],
    [{ status: 400, body: { detail: "You have already posted that comment." } }, "AlreadyExists"],
    [{ status: 429, headers: { "retry-after": "3600" } }, "ResourceExhausted"],
    [{ status: 500 }, "Unavailable"],
  ])("answers Sentry's %j with %s", async (answer, code) => {
    h = await setup({ env: { SENTRY_MAX_ATTEMPTS: "1" } });
    server = await serve(h);
    h.fake.answer(answer);
    const err = await callError(server.client.addComment({ issueId: "42", text: "x" }));
    expect(Code[err.code]).toBe(code);
    expect(err.message).not.toContain(TOKEN);
  });

  it("answers DeadlineExceeded when Sentry hangs", async () => {
    h = await setup({ env: { SENTRY_MAX_ATTEMPTS: "1" } });
    server = await serve(h);
    h.fake.answer("hang");
    const err = await callError(server.client.getIssue({ issueId: "42" }));
    expect(err.code).toBe(Code.DeadlineExceeded);
  });

  it("passes the caller's deadline on to Sentry", async () => {
    h = await setup({ env: { SENTRY_TIMEOUT_MS: "30000" } });
    server = await serve(h);
    h.fake.answer("hang");
    const started = Date.now();
    const err = await callError(server.client.getIssue({ issueId: "42" }, { timeoutMs: 300 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(h.fake.received).toHaveLength(1);
  });

  it("fails fast with Unavailable once Sentry's outage opens the breaker", async () => {
    h = await setup({
      env: { SENTRY_MAX_ATTEMPTS: "1" },
      upstream: { breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 } },
    });
    server = await serve(h);
    h.fake.answer({ status: 502 }, { status: 502 });
    for (let i = 0; i < 2; i++)
      expect((await callError(server.client.getIssue({ issueId: "42" }))).code).toBe(Code.Unavailable);
    const err = await callError(server.client.getIssue({ issueId: "42" }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("sentry is failing; circuit open");
    expect(h.fake.received).toHaveLength(2);
  });

  it("answers FailedPrecondition naming the variable when no token is set and dry run is off", async () => {
    h = await setup({ token: false });
    server = await serve(h);
    const err = await callError(server.client.addComment({ issueId: "42", text: "x", idempotencyKey: "k" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toBe("SENTRY_AUTH_TOKEN is not set");
    expect(h.fake.received).toEqual([]);
  });

  it("answers a dry run when no token is set and dry run is on", async () => {
    h = await setup({ token: false, env: { HOOKMESH_DRY_RUN: "1" } });
    server = await serve(h);
    const res = await server.client.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "k" });
    expect(res.comment).toMatchObject({ text: "Working on it" });
    expect(res.call).toMatchObject({
      dryRun: true,
      replayed: false,
      request: { method: "POST", url: `${h.fake.url}/issues/42/comments/`, body: '{"text":"Working on it"}' },
    });
    const final = await server.client.updateComment({ issueId: "42", commentId: res.comment!.id, text: "The answer" });
    expect(final.call).toMatchObject({
      dryRun: true,
      request: {
        method: "PUT",
        url: `${h.fake.url}/issues/42/comments/${res.comment!.id}/`,
        body: '{"text":"The answer"}',
      },
    });
    expect(h.fake.received).toEqual([]);
  });

  it("answers InvalidArgument for a malformed request", async () => {
    h = await setup();
    server = await serve(h);
    const err = await callError(server.client.getIssue({ issueId: "PUMP-1A" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe(`issue_id must be Sentry's numeric issue id, not a short id or URL: "PUMP-1A"`);
  });

  it("answers Unavailable when the idempotency store cannot be reached, without posting", async () => {
    h = await setup();
    server = await serve(h);
    h.fake.addIssue("42");
    h.redis.disconnect();
    const err = await callError(server.client.addComment({ issueId: "42", text: "x", idempotencyKey: "k" }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("idempotency store unavailable; retry later");
    expect(h.fake.received).toEqual([]);
  });

  it("serves health and keeps the token out of every log line", async () => {
    h = await setup({ env: { SENTRY_MAX_ATTEMPTS: "2" } });
    server = await serve(h);
    h.fake.addIssue("42");
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
    expect((await health.check({ service: SentryService.typeName })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );

    h.fake.answer(
      { status: 401, body: { detail: "Invalid token" } },
      { status: 500 },
      { status: 500 },
      { status: 429, headers: { "retry-after": "0" } },
    );
    await callError(server.client.getIssue({ issueId: "42" }));
    await callError(server.client.getIssue({ issueId: "42" }));
    await server.client.addComment({ issueId: "42", text: "x" });

    const lines = h.lines();
    // Three SentryService calls and the health check.
    expect(lines.filter((l) => l.includes('"msg":"rpc'))).toHaveLength(4);
    expect(lines.join("\n")).not.toContain(TOKEN);
  });
});

describe("sentry routes (in-memory transport)", () => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  function client() {
    const transport = createRouterTransport(routes(h.api), {
      router: { interceptors: [serverCallInterceptor(h.logger, mapUpstreamError)] },
    });
    return createClient(SentryService, transport);
  }

  it("translates requests and delegates", async () => {
    h = await setup();
    h.fake.addIssue("42");
    const res = await client().updateIssue({ issueId: "42", status: IssueStatus.IGNORED });
    expect(res.issue?.status).toBe(IssueStatus.IGNORED);
    expect(h.fake.received[0]!.text).toBe('{"status":"ignored"}');
  });

  it("maps refusals, missing tokens and Sentry's answers to codes", async () => {
    h = await setup({ token: false });
    expect((await callError(client().updateIssue({ issueId: "42" }))).code).toBe(Code.InvalidArgument);
    expect((await callError(client().getIssue({ issueId: "42" }))).code).toBe(Code.FailedPrecondition);
  });
});
