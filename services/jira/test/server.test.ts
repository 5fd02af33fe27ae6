import { type Client, Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { serverCallInterceptor } from "@hookmesh/kit";
import { callError } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { mapJiraError } from "../src/errors.js";
import { routes } from "../src/routes.js";
import { adf } from "./fake-jira.js";
import { BASIC_AUTH, expectNoSecrets, type Harness, type HarnessOptions, setup } from "./helpers.js";

describe("JiraService over gRPC (real server)", () => {
  let h: Harness;
  let client: Client<typeof JiraService>;
  let baseUrl: string;

  async function start(options?: HarnessOptions) {
    h = await setup(options);
    const { port } = await h.server.listen(0, "127.0.0.1");
    baseUrl = `http://127.0.0.1:${port}`;
    client = createClient(JiraService, createGrpcTransport({ baseUrl }));
  }

  afterEach(async () => {
    await h?.close();
  });

  it("adds, updates, reads and transitions over RPC, with the request in every CallInfo", async () => {
    await start();
    const added = await client.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "t-1:ack" });
    expect(added.comment).toMatchObject({
      id: "10000",
      body: "Working on it",
      url: `${h.fake.baseUrl}/browse/PROJ-7?focusedCommentId=10000`,
    });
    expect(added.call).toMatchObject({
      dryRun: false,
      replayed: false,
      request: { method: "POST", url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7/comment` },
    });
    const updated = await client.updateComment({
      issueKey: "PROJ-7",
      commentId: "10000",
      body: "Done.\n\nIt took 3s.",
    });
    expect(updated.comment?.body).toBe("Done.\n\nIt took 3s.");
    expect(JSON.parse(updated.call!.request!.body)).toEqual({ body: adf("Done.", "It took 3s.") });
    const issue = await client.getIssue({ issueKey: "PROJ-7" });
    expect(issue.issue).toMatchObject({ key: "PROJ-7", status: "To Do", issueType: "Bug" });
    const moved = await client.transitionIssue({ issueKey: "PROJ-7", transitionName: "done" });
    expect(moved.transitionId).toBe("31");
    expect(h.fake.received.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /rest/api/3/issue/PROJ-7/comment",
      "PUT /rest/api/3/issue/PROJ-7/comment/10000",
      "GET /rest/api/3/issue/PROJ-7",
      "GET /rest/api/3/issue/PROJ-7/transitions",
      "POST /rest/api/3/issue/PROJ-7/transitions",
    ]);
    expect(h.fake.received.every((r) => r.headers.authorization === BASIC_AUTH)).toBe(true);
  });

  it("replays a repeated AddComment with the same idempotency key instead of posting twice", async () => {
    await start();
    const first = await client.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "t-2:ack" });
    const again = await client.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "t-2:ack" });
    expect(again.call?.replayed).toBe(true);
    expect(again.comment).toEqual(first.comment);
    expect(h.fake.received).toHaveLength(1);
  });

  it.each([
    [401, "Client must be authenticated to access this resource.", Code.Unauthenticated],
    [403, { errorMessages: ["You do not have permission"], errors: {} }, Code.PermissionDenied],
    [
      404,
      { errorMessages: ["Issue does not exist or you do not have permission to see it."], errors: {} },
      Code.NotFound,
    ],
    [400, { errorMessages: [], errors: { comment: "Comment body can not be empty!" } }, Code.InvalidArgument],
    [422, { errorMessages: ["Unprocessable Entity"] }, Code.InvalidArgument],
    [429, { errorMessages: ["Rate limit exceeded."] }, Code.ResourceExhausted],
    [503, { errorMessages: ["Service Unavailable"] }, Code.Unavailable],
  ])("maps a Jira %i to its code over the wire", async (status, body, code) => {
    await start({ env: { JIRA_MAX_ATTEMPTS: "1" } });
    h.fake.answer({ status, body, headers: status === 429 ? { "retry-after": "0" } : {} });
    const err = await callError(client.getIssue({ issueKey: "PROJ-7" }));
    expect(err.code).toBe(code);
    expect(err.rawMessage).toMatch(new RegExp(`^jira (answered ${status}|rate limit)`));
  });

  it("carries Jira's error messages to the caller", async () => {
    await start();
    h.fake.answer({
      status: 400,
      body: { errorMessages: ["Bad"], errors: { comment: "Comment body can not be empty!" } },
    });
    const err = await callError(client.addComment({ issueKey: "PROJ-7", body: "x" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("jira answered 400: Bad; comment: Comment body can not be empty!");
  });

  it("answers FailedPrecondition naming the available transitions", async () => {
    await start();
    const err = await callError(client.transitionIssue({ issueKey: "PROJ-7", transitionName: "Reopen" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toContain('available: "Start Progress" (11), "Done" (31)');
  });

  it("answers InvalidArgument naming the field for a malformed request", async () => {
    await start();
    const err = await callError(client.updateComment({ issueKey: "PROJ-7", commentId: "", body: "x" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^comment_id must be /);
  });

  it("answers DeadlineExceeded when Jira does not answer within the caller's deadline", async () => {
    await start({ env: { JIRA_TIMEOUT_MS: "5000" } });
    h.fake.answer("hang");
    const started = Date.now();
    const err = await callError(client.getIssue({ issueKey: "PROJ-7" }, { timeoutMs: 300 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("fails fast with Unavailable once repeated 5xx opened the breaker", async () => {
    await start({
      env: { JIRA_MAX_ATTEMPTS: "2" },
      upstream: { breaker: { volumeThreshold: 4, resetTimeoutMs: 60_000 } },
    });
    h.fake.answer(...Array.from({ length: 4 }, () => ({ status: 502 })));
    expect((await callError(client.getIssue({ issueKey: "PROJ-7" }))).code).toBe(Code.Unavailable);
    expect((await callError(client.getIssue({ issueKey: "PROJ-7" }))).code).toBe(Code.Unavailable);
    expect(h.fake.received).toHaveLength(4);
    const err = await callError(client.addComment({ issueKey: "PROJ-7", body: "x" }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("jira is failing; circuit open");
    expect(h.fake.received).toHaveLength(4);
  });

  it.each([
    [
      { JIRA_EMAIL: undefined, JIRA_API_TOKEN: undefined },
      "JIRA_EMAIL + JIRA_API_TOKEN or JIRA_BEARER_TOKEN is not set",
    ],
    [{ JIRA_BASE_URL: undefined }, "JIRA_BASE_URL is not set"],
  ])("answers FailedPrecondition naming the variable when %j and dry run is off", async (env, message) => {
    await start({ env });
    const err = await callError(client.addComment({ issueKey: "PROJ-7", body: "x" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toBe(message);
    expect(h.fake.received).toHaveLength(0);
  });

  it("answers a clearly marked dry run, sending nothing, when dry run is on and nothing is configured", async () => {
    await start({
      env: { JIRA_BASE_URL: undefined, JIRA_EMAIL: undefined, JIRA_API_TOKEN: undefined, HOOKMESH_DRY_RUN: "1" },
    });
    const res = await client.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "t-3:ack" });
    expect(res.comment?.id).toMatch(/^\d+$/);
    expect(res.call).toMatchObject({
      dryRun: true,
      request: {
        method: "POST",
        url: "https://jira.invalid/rest/api/3/issue/PROJ-7/comment",
        body: JSON.stringify({ body: adf("Working on it") }),
      },
    });
    const update = await client.updateComment({ issueKey: "PROJ-7", commentId: res.comment!.id, body: "Done" });
    expect(update.call).toMatchObject({
      dryRun: true,
      request: {
        method: "PUT",
        url: `https://jira.invalid/rest/api/3/issue/PROJ-7/comment/${res.comment!.id}`,
        body: JSON.stringify({ body: adf("Done") }),
      },
    });
    expect(h.fake.received).toHaveLength(0);
    expect(h.lines().filter((l) => l.includes("dry run"))).toHaveLength(2);
  });

  it("serves health and logs no secret", async () => {
    await start();
    const health = createClient(Health, createGrpcTransport({ baseUrl }));
    expect((await health.check({ service: JiraService.typeName })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    await client.addComment({ issueKey: "PROJ-7", body: "x" });
    h.fake.answer({ status: 401, body: "Client must be authenticated to access this resource." });
    await callError(client.getIssue({ issueKey: "PROJ-7" }));
    expect(h.lines().some((l) => l.includes('"procedure":"/hookmesh.jira.v1.JiraService/AddComment"'))).toBe(true);
    for (const line of h.lines()) expectNoSecrets(line);
  });
});

describe("JiraService handlers (in-memory transport)", () => {
  let h: Harness;
  afterEach(async () => h?.close());

  it("translates requests and maps domain errors like the server does", async () => {
    h = await setup();
    const transport = createRouterTransport(routes(h.api), {
      router: { interceptors: [serverCallInterceptor(h.logger, mapJiraError)] },
    });
    const client = createClient(JiraService, transport);
    const res = await client.transitionIssue({ issueKey: "PROJ-7", transitionId: "11" });
    expect(res.transitionId).toBe("11");
    expect(res.call?.request?.body).toBe('{"transition":{"id":"11"}}');
    expect((await callError(client.getIssue({ issueKey: "NOPE-1" }))).code).toBe(Code.NotFound);
    expect((await callError(client.getIssue({ issueKey: "" }))).code).toBe(Code.InvalidArgument);
    expect(
      (await callError(client.transitionIssue({ issueKey: "PROJ-7", transitionName: "Start Progress" }))).code,
    ).toBe(Code.FailedPrecondition);
  });
});
