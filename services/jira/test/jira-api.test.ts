import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { InvalidRequestError, MissingCredentialError, UpstreamError } from "@hookmesh/kit";
import { failure } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { TransitionUnavailableError } from "../src/errors.js";
import { jiraRateLimit } from "../src/upstream.js";
import { adf } from "./fake-jira.js";
import {
  API_TOKEN,
  BASIC_AUTH,
  BEARER_TOKEN,
  expectNoSecrets,
  type Harness,
  type HarnessOptions,
  setup,
} from "./helpers.js";

const JSON_CONTENT = "application/json; charset=utf-8";

describe("JiraApi against a Jira Cloud-like server (REST v3, ADF)", () => {
  let h: Harness;
  const start = async (options?: HarnessOptions) => (h = await setup(options));
  afterEach(async () => h?.close());

  it("adds a comment: POST /rest/api/3/issue/{key}/comment with an ADF body and Basic auth", async () => {
    await start();
    const res = await h.api.addComment({
      issueKey: "PROJ-7",
      body: "Working on it (task t-1).\nStarted 10:00\n\nI will edit this comment.",
      idempotencyKey: "",
    });
    expect(h.fake.received).toHaveLength(1);
    const [req] = h.fake.received;
    expect(req).toMatchObject({ method: "POST", path: "/rest/api/3/issue/PROJ-7/comment", query: "" });
    expect(req!.headers).toMatchObject({
      authorization: BASIC_AUTH,
      "content-type": JSON_CONTENT,
      accept: "application/json",
    });
    const body = {
      body: {
        type: "doc",
        version: 1,
        content: [
          {
            type: "paragraph",
            content: [
              { type: "text", text: "Working on it (task t-1)." },
              { type: "hardBreak" },
              { type: "text", text: "Started 10:00" },
            ],
          },
          { type: "paragraph", content: [{ type: "text", text: "I will edit this comment." }] },
        ],
      },
    };
    expect(req!.body).toEqual(body);
    expect(res.comment).toMatchObject({
      id: "10000",
      body: "Working on it (task t-1).\nStarted 10:00\n\nI will edit this comment.",
      url: `${h.fake.baseUrl}/browse/PROJ-7?focusedCommentId=10000`,
    });
    expect(res.call).toMatchObject({
      dryRun: false,
      replayed: false,
      request: { method: "POST", url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7/comment`, body: JSON.stringify(body) },
    });
  });

  it("updates a comment in place: PUT /rest/api/3/issue/{key}/comment/{id}", async () => {
    await start();
    const added = await h.api.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "" });
    const res = await h.api.updateComment({
      issueKey: "PROJ-7",
      commentId: added.comment!.id,
      body: "Done in 42s.\n\nCost $0.12",
    });
    const req = h.fake.received[1]!;
    expect(req).toMatchObject({ method: "PUT", path: "/rest/api/3/issue/PROJ-7/comment/10000", query: "" });
    expect(req.headers).toMatchObject({ authorization: BASIC_AUTH, "content-type": JSON_CONTENT });
    expect(req.body).toEqual({ body: adf("Done in 42s.", "Cost $0.12") });
    expect(res.comment).toMatchObject({
      id: "10000",
      body: "Done in 42s.\n\nCost $0.12",
      url: `${h.fake.baseUrl}/browse/PROJ-7?focusedCommentId=10000`,
    });
    expect(res.call?.request).toMatchObject({
      method: "PUT",
      url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7/comment/10000`,
    });
    expect(h.fake.comments.get("10000")!.body).toEqual(adf("Done in 42s.", "Cost $0.12"));
  });

  it("gets an issue with only the fields it needs and flattens the ADF description", async () => {
    await start();
    const res = await h.api.getIssue({ issueKey: "PROJ-7" });
    expect(h.fake.received).toHaveLength(1);
    expect(h.fake.received[0]).toMatchObject({
      method: "GET",
      path: "/rest/api/3/issue/PROJ-7",
      query: "?fields=summary,description,status,issuetype,assignee",
      body: undefined,
    });
    expect(h.fake.received[0]!.headers["content-type"]).toBeUndefined();
    expect(res.issue).toMatchObject({
      key: "PROJ-7",
      summary: "Login fails with SSO",
      description: "Steps:\n1. open /login\n\nExpected: it works",
      status: "To Do",
      issueType: "Bug",
      assignee: "Mia Krystof",
      url: `${h.fake.baseUrl}/browse/PROJ-7`,
    });
    expect(res.call?.request).toEqual(
      expect.objectContaining({
        method: "GET",
        url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7?fields=summary,description,status,issuetype,assignee`,
        body: "",
      }),
    );
  });

  it("reads an account's groups: GET /rest/api/3/user/groups?accountId=…; an unknown account is NotFound", async () => {
    await start();
    h.fake.groups.set("557058:f58131cb", ["jira-developers", "hookmesh-users"]);
    const res = await h.api.getUserGroups({ accountId: "557058:f58131cb" });
    expect(h.fake.received.map((r) => r.path + r.query)).toEqual([
      "/rest/api/3/user/groups?accountId=557058%3Af58131cb",
    ]);
    expect(res.groups).toEqual(["jira-developers", "hookmesh-users"]);
    expect(((await failure(h.api.getUserGroups({ accountId: "nobody" }))) as UpstreamError).code).toBe(Code.NotFound);
    await expect(h.api.getUserGroups({ accountId: "a b" })).rejects.toThrow(/account_id must be/);
  });

  it("reads an unassigned issue without a description", async () => {
    await start();
    h.fake.addIssue({ key: "OPS-1", assignee: null, description: null });
    const res = await h.api.getIssue({ issueKey: "OPS-1" });
    expect(res.issue).toMatchObject({ key: "OPS-1", assignee: "", description: "" });
  });

  it("transitions by name, case-insensitively: lists the transitions, then POSTs the id (204)", async () => {
    await start();
    const res = await h.api.transitionIssue({ issueKey: "PROJ-7", transitionId: "", transitionName: "start progress" });
    expect(h.fake.received.map((r) => [r.method, r.path + r.query])).toEqual([
      ["GET", "/rest/api/3/issue/PROJ-7/transitions"],
      ["POST", "/rest/api/3/issue/PROJ-7/transitions"],
    ]);
    expect(h.fake.received[1]!.body).toEqual({ transition: { id: "11" } });
    expect(h.fake.received[1]!.headers).toMatchObject({ authorization: BASIC_AUTH, "content-type": JSON_CONTENT });
    expect(res.transitionId).toBe("11");
    expect(res.call?.request).toMatchObject({
      method: "POST",
      url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7/transitions`,
      body: '{"transition":{"id":"11"}}',
    });
    expect(h.fake.issues.get("PROJ-7")!.status).toBe("In Progress");
  });

  it("transitions by id, and by the name of the status when no transition has that name", async () => {
    await start();
    expect(
      (await h.api.transitionIssue({ issueKey: "PROJ-7", transitionId: "11", transitionName: "" })).transitionId,
    ).toBe("11");
    expect(
      (await h.api.transitionIssue({ issueKey: "PROJ-7", transitionId: "", transitionName: "to do" })).transitionId,
    ).toBe("21");
    expect(h.fake.issues.get("PROJ-7")!.status).toBe("To Do");
  });

  it("fails with the available transitions, and sends no transition, when the one asked for is not available", async () => {
    await start();
    const err = await failure(
      h.api.transitionIssue({ issueKey: "PROJ-7", transitionId: "", transitionName: "Reopen" }),
    );
    expect(err).toBeInstanceOf(TransitionUnavailableError);
    expect(err.message).toBe(
      'transition "Reopen" is not available for PROJ-7; available: "Start Progress" (11), "Done" (31)',
    );
    const byId = await failure(h.api.transitionIssue({ issueKey: "PROJ-7", transitionId: "41", transitionName: "" }));
    expect(byId.message).toContain("transition id 41 is not available for PROJ-7");
    expect(h.fake.received.every((r) => r.method === "GET")).toBe(true);
  });

  it("rejects malformed requests before sending anything", async () => {
    await start();
    const api = h.api;
    const errors = await Promise.all([
      failure(api.addComment({ issueKey: "", body: "x", idempotencyKey: "" })),
      failure(api.addComment({ issueKey: "../../myself", body: "x", idempotencyKey: "" })),
      failure(api.addComment({ issueKey: "PROJ-7", body: " \n \n", idempotencyKey: "" })),
      failure(api.updateComment({ issueKey: "PROJ-7", commentId: "10000/../x", body: "x" })),
      failure(api.transitionIssue({ issueKey: "PROJ-7", transitionId: "", transitionName: " " })),
    ]);
    expect(errors.map((e) => (e as InvalidRequestError).field)).toEqual([
      "issue_key",
      "issue_key",
      "body",
      "comment_id",
      "transition_id",
    ]);
    expect(errors.every((e) => e instanceof InvalidRequestError)).toBe(true);
    expect(h.fake.received).toHaveLength(0);
  });

  it.each([
    [
      401,
      "Client must be authenticated to access this resource.",
      Code.Unauthenticated,
      "jira answered 401: Client must be authenticated to access this resource.",
    ],
    [
      403,
      { errorMessages: ["You do not have the permission to comment on this issue."], errors: {} },
      Code.PermissionDenied,
      "jira answered 403: You do not have the permission to comment on this issue.",
    ],
    [
      404,
      { errorMessages: ["Issue does not exist or you do not have permission to see it."], errors: {} },
      Code.NotFound,
      "jira answered 404: Issue does not exist or you do not have permission to see it.",
    ],
    [
      400,
      { errorMessages: [], errors: { comment: "Comment body can not be empty!" } },
      Code.InvalidArgument,
      "jira answered 400: comment: Comment body can not be empty!",
    ],
    [
      422,
      { errorMessages: ["Unprocessable"], errors: { body: "too long" } },
      Code.InvalidArgument,
      "jira answered 422: Unprocessable; body: too long",
    ],
    [409, { errorMessages: ["Conflict"] }, Code.FailedPrecondition, "jira answered 409: Conflict"],
  ])("maps a %i answer to its code, with Jira's messages", async (status, body, code, message) => {
    await start();
    h.fake.answer({ status, body });
    const err = await failure(h.api.addComment({ issueKey: "PROJ-7", body: "hi", idempotencyKey: "" }));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ code, status, message });
    expect(h.fake.received).toHaveLength(1);
  });

  it("answers 401 for a wrong token, as Jira does", async () => {
    await start({ env: { JIRA_API_TOKEN: "wrong-token" } });
    const err = await failure(h.api.getIssue({ issueKey: "PROJ-7" }));
    expect(err).toMatchObject({ code: Code.Unauthenticated, status: 401 });
  });

  it("retries an idempotent call after 5xx answers", async () => {
    await start();
    h.fake.answer({ status: 503, body: { errorMessages: ["Service Unavailable"] } }, { status: 500, body: "oops" });
    const res = await h.api.getIssue({ issueKey: "PROJ-7" });
    expect(res.issue?.summary).toBe("Login fails with SSO");
    expect(h.fake.received).toHaveLength(3);
    expect(new Set(h.fake.received.map((r) => r.path + r.query)).size).toBe(1);
  });

  it("retries an update (PUT) after a 502", async () => {
    await start();
    await h.api.addComment({ issueKey: "PROJ-7", body: "a", idempotencyKey: "" });
    h.fake.answer({ status: 502 });
    const res = await h.api.updateComment({ issueKey: "PROJ-7", commentId: "10000", body: "b" });
    expect(res.comment?.body).toBe("b");
    expect(h.fake.received.map((r) => r.method)).toEqual(["POST", "PUT", "PUT"]);
  });

  it("never retries a comment POST after a 5xx (it may have been created)", async () => {
    await start();
    h.fake.answer({ status: 502 });
    const err = await failure(h.api.addComment({ issueKey: "PROJ-7", body: "hi", idempotencyKey: "" }));
    expect(err).toMatchObject({ code: Code.Unavailable, status: 502 });
    expect(h.fake.received).toHaveLength(1);
    expect(h.fake.comments.size).toBe(0);
  });

  it("retries a comment POST after 429, waiting the Retry-After Jira asks for", async () => {
    await start();
    h.fake.answer({ status: 429, headers: { "retry-after": "1" }, body: { errorMessages: ["Rate limit exceeded."] } });
    const started = Date.now();
    const res = await h.api.addComment({ issueKey: "PROJ-7", body: "hi", idempotencyKey: "" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(res.comment?.id).toBe("10000");
    expect(h.fake.received.map((r) => r.method)).toEqual(["POST", "POST"]);
    expect(h.fake.received[1]!.body).toEqual(h.fake.received[0]!.body);
    expect(h.fake.comments.size).toBe(1);
  });

  it("fails with ResourceExhausted when Jira asks to wait longer than allowed", async () => {
    await start({ upstream: { maxRateLimitWaitMs: 500 } });
    h.fake.answer({ status: 429, headers: { "retry-after": "120" } });
    const err = await failure(h.api.getIssue({ issueKey: "PROJ-7" }));
    expect(err).toMatchObject({ code: Code.ResourceExhausted, status: 429 });
    expect(h.fake.received).toHaveLength(1);
  });

  it("times out an attempt that gets no answer, retries a read, then fails with DeadlineExceeded", async () => {
    await start();
    h.fake.answer("hang", "hang", "hang");
    const started = Date.now();
    const err = await failure(h.api.getIssue({ issueKey: "PROJ-7" }));
    expect(err).toMatchObject({ code: Code.DeadlineExceeded });
    expect(h.fake.received).toHaveLength(3);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("does not retry a comment POST that got no answer", async () => {
    await start();
    h.fake.answer("hang");
    const err = await failure(h.api.addComment({ issueKey: "PROJ-7", body: "hi", idempotencyKey: "" }));
    expect(err).toMatchObject({ code: Code.DeadlineExceeded });
    expect(h.fake.received).toHaveLength(1);
  });

  it("stops at the caller's deadline", async () => {
    await start({ env: { JIRA_TIMEOUT_MS: "5000" } });
    h.fake.answer("hang");
    const started = Date.now();
    const err = await failure(h.api.getIssue({ issueKey: "PROJ-7" }, { deadline: Date.now() + 200 }));
    expect(err).toMatchObject({ code: Code.DeadlineExceeded });
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it("opens the breaker after repeated 5xx: the next call fails fast with Unavailable without reaching Jira", async () => {
    await start({
      env: { JIRA_MAX_ATTEMPTS: "1" },
      upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } },
    });
    for (let i = 0; i < 3; i++) {
      h.fake.answer({ status: 503 });
      expect(await failure(h.api.getIssue({ issueKey: "PROJ-7" }))).toMatchObject({
        code: Code.Unavailable,
        status: 503,
      });
    }
    expect(h.fake.received).toHaveLength(3);
    const started = Date.now();
    const err = await failure(h.api.getIssue({ issueKey: "PROJ-7" }));
    expect(err).toMatchObject({ code: Code.Unavailable, message: "jira is failing; circuit open" });
    expect(Date.now() - started).toBeLessThan(100);
    expect(h.fake.received).toHaveLength(3);
  });

  it("does not open the breaker on refused requests (4xx)", async () => {
    await start({
      env: { JIRA_MAX_ATTEMPTS: "1" },
      upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } },
    });
    for (let i = 0; i < 4; i++) {
      expect(await failure(h.api.getIssue({ issueKey: "NOPE-1" }))).toMatchObject({ code: Code.NotFound });
    }
    expect((await h.api.getIssue({ issueKey: "PROJ-7" })).issue?.key).toBe("PROJ-7");
  });

  describe("idempotency", () => {
    it("posts once for two calls with the same key; the second is the stored answer, marked replayed", async () => {
      await start();
      const first = await h.api.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "task-1:ack" });
      const second = await h.api.addComment({
        issueKey: "PROJ-7",
        body: "Working on it",
        idempotencyKey: "task-1:ack",
      });
      expect(h.fake.received.filter((r) => r.method === "POST")).toHaveLength(1);
      expect(first.call?.replayed).toBe(false);
      expect(second.call?.replayed).toBe(true);
      expect(second.comment).toEqual(first.comment);
      expect(second.call?.request).toEqual(first.call?.request);
      expect(await h.db.redis.exists(`${h.db.prefix}idempotency:addComment:task-1:ack`)).toBe(1);
    });

    it("posts once for concurrent calls with the same key", async () => {
      await start();
      const calls = await Promise.all(
        [1, 2, 3].map(() =>
          h.api.addComment({ issueKey: "PROJ-7", body: "Working on it", idempotencyKey: "task-2:ack" }),
        ),
      );
      expect(h.fake.comments.size).toBe(1);
      expect(new Set(calls.map((c) => c.comment?.id))).toEqual(new Set(["10000"]));
      expect(calls.filter((c) => c.call?.replayed)).toHaveLength(2);
    });

    it("posts again after a failed first call, and for different keys", async () => {
      await start();
      h.fake.answer({ status: 500 });
      await failure(h.api.addComment({ issueKey: "PROJ-7", body: "a", idempotencyKey: "task-3:ack" }));
      const retried = await h.api.addComment({ issueKey: "PROJ-7", body: "a", idempotencyKey: "task-3:ack" });
      expect(retried.call?.replayed).toBe(false);
      await h.api.addComment({ issueKey: "PROJ-7", body: "a", idempotencyKey: "task-4:ack" });
      await h.api.addComment({ issueKey: "PROJ-7", body: "a", idempotencyKey: "" });
      await h.api.addComment({ issueKey: "PROJ-7", body: "a", idempotencyKey: "" });
      expect(h.fake.comments.size).toBe(4);
    });
  });

  describe("dry run", () => {
    it("without a base URL sends nothing and answers with the request it would have sent, at a placeholder URL", async () => {
      await start({
        env: { JIRA_BASE_URL: undefined, JIRA_EMAIL: undefined, JIRA_API_TOKEN: undefined, HOOKMESH_DRY_RUN: "1" },
      });
      const res = await h.api.addComment({
        issueKey: "PROJ-7",
        body: "Working on it\n\ntask t-9",
        idempotencyKey: "task-9:ack",
      });
      expect(h.fake.received).toHaveLength(0);
      const id = res.comment!.id;
      expect(id).toMatch(/^\d+$/);
      expect(res.comment).toMatchObject({
        body: "Working on it\n\ntask t-9",
        url: `https://jira.invalid/browse/PROJ-7?focusedCommentId=${id}`,
      });
      expect(res.call).toMatchObject({
        dryRun: true,
        replayed: false,
        request: {
          method: "POST",
          url: "https://jira.invalid/rest/api/3/issue/PROJ-7/comment",
          body: JSON.stringify({ body: adf("Working on it", "task t-9") }),
        },
      });
      // A dry run is not remembered: once configured, the same key posts for real.
      expect(await h.db.redis.exists(`${h.db.prefix}idempotency:addComment:task-9:ack`)).toBe(0);
      const logged = h
        .lines()
        .filter((l) => l.includes("dry run"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logged).toEqual([
        expect.objectContaining({
          level: 30,
          upstream: "jira",
          method: "POST",
          url: "https://jira.invalid/rest/api/3/issue/PROJ-7/comment",
          missing: "JIRA_BASE_URL",
        }),
      ]);
    });

    it("with a base URL but no credentials describes every call at the real URL and sends nothing", async () => {
      await start({ env: { JIRA_EMAIL: undefined, JIRA_API_TOKEN: undefined, HOOKMESH_DRY_RUN: "true" } });
      const api = h.api;
      const update = await api.updateComment({ issueKey: "PROJ-7", commentId: "dry-run", body: "Done" });
      expect(update.comment).toMatchObject({ id: "dry-run", body: "Done" });
      expect(update.call).toMatchObject({
        dryRun: true,
        request: {
          method: "PUT",
          url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7/comment/dry-run`,
          body: JSON.stringify({ body: adf("Done") }),
        },
      });
      const issue = await api.getIssue({ issueKey: "PROJ-7" });
      expect(issue.issue).toMatchObject({ key: "PROJ-7", summary: "dry run: nothing was sent to Jira" });
      expect(issue.call).toMatchObject({
        dryRun: true,
        request: {
          method: "GET",
          url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7?fields=summary,description,status,issuetype,assignee`,
          body: "",
        },
      });
      const byName = await api.transitionIssue({ issueKey: "PROJ-7", transitionId: "", transitionName: "Done" });
      expect(byName).toMatchObject({
        transitionId: "dry-run",
        call: { dryRun: true, request: { method: "POST", body: '{"transition":{"id":"dry-run"}}' } },
      });
      const byId = await api.transitionIssue({ issueKey: "PROJ-7", transitionId: "31", transitionName: "" });
      expect(byId).toMatchObject({
        transitionId: "31",
        call: {
          dryRun: true,
          request: { url: `${h.fake.baseUrl}/rest/api/3/issue/PROJ-7/transitions`, body: '{"transition":{"id":"31"}}' },
        },
      });
      expect(h.fake.received).toHaveLength(0);
      // A transition lists the transitions, then takes one: two requests described each time.
      expect(h.lines().filter((l) => l.includes('"msg":"dry run: request not sent to Jira"'))).toHaveLength(6);
    });

    it("still validates the request", async () => {
      await start({ env: { JIRA_BASE_URL: undefined, HOOKMESH_DRY_RUN: "1" } });
      expect(await failure(h.api.addComment({ issueKey: "PROJ 7", body: "x", idempotencyKey: "" }))).toBeInstanceOf(
        InvalidRequestError,
      );
    });
  });

  describe("not configured, dry run off", () => {
    it.each([
      [{ JIRA_BASE_URL: undefined }, "JIRA_BASE_URL"],
      [{ JIRA_EMAIL: undefined, JIRA_API_TOKEN: undefined }, "JIRA_EMAIL + JIRA_API_TOKEN or JIRA_BEARER_TOKEN"],
      [{ JIRA_API_TOKEN: undefined }, "JIRA_API_TOKEN"],
    ])("fails naming the variable to set: %j", async (env, variable) => {
      await start({ env });
      const err = await failure(h.api.addComment({ issueKey: "PROJ-7", body: "x", idempotencyKey: "k" }));
      expect(err).toBeInstanceOf(MissingCredentialError);
      expect(err).toMatchObject({ variable, message: `${variable} is not set` });
      expect(h.fake.received).toHaveLength(0);
    });
  });

  describe("credentials", () => {
    let dir: string | undefined;
    afterEach(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
      dir = undefined;
    });

    it("reloads a credential file when it changes: the next call uses the new token", async () => {
      dir = await mkdtemp(join(tmpdir(), "jira-cred-"));
      const file = join(dir, "token");
      await writeFile(file, "old-token\n");
      await start({ env: { JIRA_API_TOKEN: undefined, JIRA_BEARER_TOKEN_FILE: file } });
      h.fake.expectedAuth = "Bearer old-token";
      await h.api.getIssue({ issueKey: "PROJ-7" });
      await writeFile(file, `${BEARER_TOKEN}\n`);
      h.fake.expectedAuth = `Bearer ${BEARER_TOKEN}`;
      await expect.poll(() => h.token?.get(), { timeout: 5_000, interval: 50 }).toBe(BEARER_TOKEN);
      await h.api.getIssue({ issueKey: "PROJ-7" });
      expect(h.fake.received.map((r) => r.headers.authorization)).toEqual([
        "Bearer old-token",
        `Bearer ${BEARER_TOKEN}`,
      ]);
      expect(
        h.lines().some((l) => l.includes('"msg":"credential reloaded"') && l.includes("JIRA_BEARER_TOKEN_FILE")),
      ).toBe(true);
    });

    it("reloads a credential file on SIGHUP", async () => {
      dir = await mkdtemp(join(tmpdir(), "jira-cred-"));
      const file = join(dir, "token");
      await writeFile(file, "old-token");
      await start({ env: { JIRA_API_TOKEN_FILE: file, JIRA_API_TOKEN: undefined } });
      await writeFile(file, API_TOKEN);
      process.emit("SIGHUP", "SIGHUP");
      await h.api.getIssue({ issueKey: "PROJ-7" });
      expect(h.fake.received[0]!.headers.authorization).toBe(BASIC_AUTH);
    });

    it("never puts a credential in logs or error messages, even when Jira echoes it", async () => {
      await start();
      h.fake.answer({
        status: 400,
        body: { errorMessages: [`bad header ${BASIC_AUTH}`], errors: { token: API_TOKEN } },
      });
      const echoed = await failure(h.api.addComment({ issueKey: "PROJ-7", body: "x", idempotencyKey: "" }));
      expect(echoed.message).toBe("jira answered 400: bad header [redacted]; token: [redacted]");
      h.fake.answer({ status: 503 }, { status: 429, headers: { "retry-after": "0" } }, "hang");
      const errors = [echoed, await failure(h.api.getIssue({ issueKey: "PROJ-7" }))];
      await h.api.addComment({ issueKey: "PROJ-7", body: "x", idempotencyKey: "k" });
      h.fake.expectedAuth = "Bearer nope";
      errors.push(await failure(h.api.getIssue({ issueKey: "PROJ-7" })));
      for (const err of errors) expectNoSecrets(err.message);
      expect(h.lines().length).toBeGreaterThan(0);
      for (const line of h.lines()) expectNoSecrets(line);
    });
  });
});

describe("JiraApi against a Data Center-like server (REST v2, wiki markup, context path, bearer token)", () => {
  let h: Harness;
  afterEach(async () => h?.close());

  it("speaks REST v2 under the context path with a bearer token and plain-string bodies", async () => {
    h = await setup({
      contextPath: "/jira",
      env: { JIRA_API_VERSION: "2", JIRA_EMAIL: undefined, JIRA_API_TOKEN: undefined, JIRA_BEARER_TOKEN: BEARER_TOKEN },
    });
    h.fake.expectedAuth = `Bearer ${BEARER_TOKEN}`;
    h.fake.addIssue({
      key: "DC-3",
      description: "h2. Steps\n\n# open the page",
      assignee: { name: "mia", displayName: "Mia K" },
    });
    const added = await h.api.addComment({
      issueKey: "DC-3",
      body: "Working on it\r\n\r\nTask t-1",
      idempotencyKey: "",
    });
    const updated = await h.api.updateComment({ issueKey: "DC-3", commentId: added.comment!.id, body: "Done" });
    const issue = await h.api.getIssue({ issueKey: "DC-3" });
    const moved = await h.api.transitionIssue({ issueKey: "DC-3", transitionId: "", transitionName: "DONE" });
    expect(h.fake.received.map((r) => [r.method, r.rawPath + r.query, r.body])).toEqual([
      ["POST", "/jira/rest/api/2/issue/DC-3/comment", { body: "Working on it\n\nTask t-1" }],
      ["PUT", "/jira/rest/api/2/issue/DC-3/comment/10000", { body: "Done" }],
      ["GET", "/jira/rest/api/2/issue/DC-3?fields=summary,description,status,issuetype,assignee", undefined],
      ["GET", "/jira/rest/api/2/issue/DC-3/transitions", undefined],
      ["POST", "/jira/rest/api/2/issue/DC-3/transitions", { transition: { id: "31" } }],
    ]);
    expect(h.fake.received.every((r) => r.headers.authorization === `Bearer ${BEARER_TOKEN}`)).toBe(true);
    expect(added.comment).toMatchObject({
      body: "Working on it\n\nTask t-1",
      url: `${h.fake.baseUrl}/browse/DC-3?focusedCommentId=10000`,
    });
    expect(updated.comment?.body).toBe("Done");
    expect(issue.issue).toMatchObject({
      description: "h2. Steps\n\n# open the page",
      assignee: "Mia K",
      url: `${h.fake.baseUrl}/browse/DC-3`,
    });
    expect(moved.transitionId).toBe("31");
    expect(h.fake.baseUrl).toMatch(/\/jira$/);
    h.fake.groups.set("JIRAUSER10100", ["jira-developers"]);
    const groups = await h.api.getUserGroups({ accountId: "JIRAUSER10100" });
    expect(h.fake.received.at(-1)!.rawPath + h.fake.received.at(-1)!.query).toBe(
      "/jira/rest/api/2/user?key=JIRAUSER10100&expand=groups",
    );
    expect(groups.groups).toEqual(["jira-developers"]);
  });
});

describe("jiraRateLimit", () => {
  it("waits for Retry-After, else until X-RateLimit-Reset, on 429 only", () => {
    expect(jiraRateLimit(429, new Headers({ "retry-after": "7" }))).toBe(7_000);
    const reset = `${new Date(Date.now() + 120_000).toISOString().slice(0, 16)}Z`;
    const wait = jiraRateLimit(429, new Headers({ "x-ratelimit-reset": reset }))!;
    expect(wait).toBeGreaterThan(59_000);
    expect(wait).toBeLessThanOrEqual(120_000);
    expect(jiraRateLimit(429, new Headers())).toBeUndefined();
    expect(jiraRateLimit(503, new Headers({ "retry-after": "7" }))).toBeUndefined();
  });
});
