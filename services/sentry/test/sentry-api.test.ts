import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { InvalidRequestError, MissingCredentialError, UpstreamError } from "@hookmesh/kit";
import { failure } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { IssueStatus } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { type Harness, setup, TOKEN } from "./helpers.js";

describe("SentryApi", () => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  describe("requests as Sentry documents them", () => {
    it("gets an issue with GET /issues/{id}/ and a bearer token, and maps its JSON", async () => {
      h = await setup();
      h.fake.addIssue("9876543", {
        status: "resolved",
        assignedTo: { type: "user", id: "88", name: "Jane Developer", email: "jane@example.com" },
        count: "9007199254740993",
      });

      const res = await h.api.getIssue({ issueId: "9876543" });

      expect(h.fake.received).toHaveLength(1);
      const [req] = h.fake.received;
      expect(req).toMatchObject({ method: "GET", path: "/issues/9876543/", query: "", text: "" });
      expect(req!.headers).toMatchObject({ authorization: `Bearer ${TOKEN}`, accept: "application/json" });
      expect(req!.headers["content-type"]).toBeUndefined();
      expect(res.issue).toMatchObject({
        id: "9876543",
        shortId: "PUMP-STATION-1A",
        title: "TypeError: Cannot read properties of undefined (reading 'map')",
        culprit: "components/Dashboard.render",
        status: IssueStatus.RESOLVED,
        permalink: "https://acme.sentry.io/issues/9876543/",
        projectSlug: "pump-station",
        assignee: "jane@example.com",
        count: 9007199254740993n,
      });
      expect(res.call).toMatchObject({
        dryRun: false,
        replayed: false,
        request: { method: "GET", url: `${h.fake.url}/issues/9876543/`, body: "" },
      });
    });

    it("adds a comment with POST /issues/{id}/comments/ and a JSON body {text}", async () => {
      h = await setup();
      h.fake.addIssue("42");

      const res = await h.api.addComment({ issueId: "42", text: "Working on it: task t-1" });

      const [req] = h.fake.received;
      expect(req).toMatchObject({
        method: "POST",
        path: "/issues/42/comments/",
        query: "",
        body: { text: "Working on it: task t-1" },
      });
      expect(req!.text).toBe('{"text":"Working on it: task t-1"}');
      expect(req!.headers).toMatchObject({
        authorization: `Bearer ${TOKEN}`,
        "content-type": "application/json; charset=utf-8",
      });
      expect(res.comment).toMatchObject({ id: "1000", text: "Working on it: task t-1" });
      expect(res.call).toMatchObject({
        dryRun: false,
        replayed: false,
        request: {
          method: "POST",
          url: `${h.fake.url}/issues/42/comments/`,
          body: '{"text":"Working on it: task t-1"}',
        },
      });
    });

    it("edits a comment with PUT /issues/{id}/comments/{comment_id}/", async () => {
      h = await setup();
      h.fake.addIssue("42");
      const { comment } = await h.api.addComment({ issueId: "42", text: "Working on it" });

      const res = await h.api.updateComment({ issueId: "42", commentId: comment!.id, text: "Done in 2m 3s" });

      expect(h.fake.received[1]).toMatchObject({
        method: "PUT",
        path: "/issues/42/comments/1000/",
        body: { text: "Done in 2m 3s" },
      });
      expect(h.fake.received[1]!.headers).toMatchObject({
        authorization: `Bearer ${TOKEN}`,
        "content-type": "application/json; charset=utf-8",
      });
      expect(res.comment).toMatchObject({ id: "1000", text: "Done in 2m 3s" });
      expect(res.call?.request).toMatchObject({
        method: "PUT",
        url: `${h.fake.url}/issues/42/comments/1000/`,
        body: '{"text":"Done in 2m 3s"}',
      });
      expect(h.fake.notes.get("1000")?.text).toBe("Done in 2m 3s");
    });

    it("updates status and assignee with PUT /issues/{id}/ and returns the updated issue", async () => {
      h = await setup();
      h.fake.addIssue("42");

      const res = await h.api.updateIssue({ issueId: "42", status: IssueStatus.RESOLVED, assignee: "team:5" });

      expect(h.fake.received[0]).toMatchObject({
        method: "PUT",
        path: "/issues/42/",
        text: '{"status":"resolved","assignedTo":"team:5"}',
      });
      expect(res.issue).toMatchObject({ id: "42", status: IssueStatus.RESOLVED, assignee: "team:5" });
      expect(res.call?.request).toEqual(
        expect.objectContaining({
          method: "PUT",
          url: `${h.fake.url}/issues/42/`,
          body: '{"status":"resolved","assignedTo":"team:5"}',
        }),
      );
    });

    it("sends only what changes: status alone, an assignee alone, and `unassign` as an empty assignedTo", async () => {
      h = await setup();
      h.fake.addIssue("42", {
        assignedTo: { type: "user", id: "88", name: "Jane Developer", email: "jane@example.com" },
      });

      const ignored = await h.api.updateIssue({ issueId: "42", status: IssueStatus.IGNORED, assignee: "" });
      const assigned = await h.api.updateIssue({
        issueId: "42",
        status: IssueStatus.UNSPECIFIED,
        assignee: "ola@example.com",
      });
      const cleared = await h.api.updateIssue({ issueId: "42", status: IssueStatus.UNSPECIFIED, assignee: "unassign" });

      expect(h.fake.received.map((r) => r.text)).toEqual([
        '{"status":"ignored"}',
        '{"assignedTo":"ola@example.com"}',
        '{"assignedTo":""}',
      ]);
      expect(ignored.issue).toMatchObject({ status: IssueStatus.IGNORED, assignee: "jane@example.com" });
      expect(assigned.issue).toMatchObject({ status: IssueStatus.IGNORED, assignee: "ola@example.com" });
      expect(cleared.issue).toMatchObject({ assignee: "" });
    });

    it("refuses malformed requests without calling Sentry", async () => {
      h = await setup();
      const refusals = await Promise.all([
        failure(h.api.getIssue({ issueId: "" })),
        failure(h.api.getIssue({ issueId: "PUMP-STATION-1A" })),
        failure(h.api.getIssue({ issueId: "../../organizations" })),
        failure(h.api.addComment({ issueId: "42", text: "  " })),
        failure(h.api.updateComment({ issueId: "42", commentId: "", text: "x" })),
        failure(h.api.updateIssue({ issueId: "42", status: IssueStatus.UNSPECIFIED, assignee: "" })),
        failure(h.api.updateIssue({ issueId: "42", status: 9 as IssueStatus, assignee: "" })),
      ]);
      for (const err of refusals) expect(err).toBeInstanceOf(InvalidRequestError);
      expect(refusals.map((e) => e.message)).toEqual([
        "issue_id is required",
        `issue_id must be Sentry's numeric issue id, not a short id or URL: "PUMP-STATION-1A"`,
        `issue_id must be Sentry's numeric issue id, not a short id or URL: "../../organizations"`,
        "text is required",
        "comment_id is required",
        "nothing to update: set status and/or assignee",
        "status 9 is not a known IssueStatus",
      ]);
      expect(h.fake.received).toEqual([]);
    });

    it("escapes the comment id in the path", async () => {
      h = await setup();
      h.fake.addIssue("42");
      const err = await failure(h.api.updateComment({ issueId: "42", commentId: "1/../..", text: "x" }));
      expect(h.fake.received[0]!.path).toBe("/issues/42/comments/1%2F..%2F../");
      expect(err).toMatchObject({ code: Code.NotFound });
    });
  });

  describe("Sentry's errors", () => {
    it.each([
      [401, { detail: "Invalid token" }, Code.Unauthenticated],
      [403, { detail: "You do not have permission to perform this action." }, Code.PermissionDenied],
      [404, { detail: "The requested resource does not exist" }, Code.NotFound],
      [400, { text: ["This field is required."] }, Code.InvalidArgument],
      [422, { detail: "Unprocessable" }, Code.InvalidArgument],
      [409, { detail: "Conflict" }, Code.FailedPrecondition],
    ])("maps %i to a code and does not retry it", async (status, body, code) => {
      h = await setup();
      h.fake.answer({ status, body });
      const err = await failure(h.api.getIssue({ issueId: "42" }));
      expect(err).toBeInstanceOf(UpstreamError);
      expect(err).toMatchObject({ code, status });
      expect(h.fake.received).toHaveLength(1);
    });

    it("says what Sentry said", async () => {
      h = await setup();
      h.fake.answer({ status: 403, body: { detail: "You do not have permission to perform this action." } });
      expect((await failure(h.api.getIssue({ issueId: "42" }))).message).toBe(
        "sentry answered 403: You do not have permission to perform this action.",
      );
    });

    it("maps Sentry's duplicate-note refusal to AlreadyExists", async () => {
      h = await setup();
      h.fake.addIssue("42");
      await h.api.addComment({ issueId: "42", text: "same" });
      const err = await failure(h.api.addComment({ issueId: "42", text: "same" }));
      expect(err).toMatchObject({
        code: Code.AlreadyExists,
        message: "sentry answered 400: You have already posted that comment.",
      });
    });

    it("fails clearly when a 2xx is not Sentry's JSON (SENTRY_API_URL pointing at the web UI)", async () => {
      h = await setup();
      h.fake.answer({ status: 200, body: "<html>" });
      const err = await failure(h.api.getIssue({ issueId: "42" }));
      expect(err).toMatchObject({ code: Code.Unknown });
      expect(err.message).toContain("SENTRY_API_URL must be the API root");
    });

    it("answers 404 for a path without its trailing slash, as Sentry does", async () => {
      h = await setup();
      const res = await fetch(`${h.fake.url}/issues/42`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ info: "Route not found, did you forget a trailing slash?" });
    });
  });

  describe("retries", () => {
    it("retries a read after 5xx", async () => {
      h = await setup();
      h.fake.addIssue("42");
      h.fake.answer({ status: 502, body: { detail: "Bad Gateway" } }, { status: 503 });
      const res = await h.api.getIssue({ issueId: "42" });
      expect(res.issue?.id).toBe("42");
      expect(h.fake.received.map((r) => `${r.method} ${r.path}`)).toEqual(Array(3).fill("GET /issues/42/"));
    });

    it("retries an edit (PUT) after 5xx", async () => {
      h = await setup();
      h.fake.addIssue("42");
      h.fake.answer({ status: 500 });
      await h.api.updateIssue({ issueId: "42", status: IssueStatus.RESOLVED, assignee: "" });
      expect(h.fake.received.map((r) => r.method)).toEqual(["PUT", "PUT"]);
    });

    it("gives up after the attempts with Unavailable", async () => {
      h = await setup();
      h.fake.answer({ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 });
      const err = await failure(h.api.getIssue({ issueId: "42" }));
      expect(err).toMatchObject({ code: Code.Unavailable, message: "sentry answered 500", status: 500 });
      expect(h.fake.received).toHaveLength(3);
    });

    it("does not repeat a comment after 5xx: Sentry may have posted it", async () => {
      h = await setup();
      h.fake.addIssue("42");
      h.fake.answer({ status: 500 });
      const err = await failure(h.api.addComment({ issueId: "42", text: "hello" }));
      expect(err).toMatchObject({ code: Code.Unavailable });
      expect(h.fake.received).toHaveLength(1);
    });

    it("repeats a comment after 429, once Retry-After has passed", async () => {
      h = await setup();
      h.fake.addIssue("42");
      h.fake.answer({
        status: 429,
        headers: { "retry-after": "1" },
        body: { detail: "You are attempting to use this endpoint too frequently." },
      });
      const res = await h.api.addComment({ issueId: "42", text: "hello" });
      expect(res.comment?.text).toBe("hello");
      const [first, second] = h.fake.received;
      expect([first!.method, second!.method]).toEqual(["POST", "POST"]);
      expect(second!.at - first!.at).toBeGreaterThanOrEqual(950);
      expect(h.fake.notes.size).toBe(1);
    });

    it("waits for X-Sentry-Rate-Limit-Reset when the window is used up and no Retry-After is given", async () => {
      h = await setup();
      h.fake.addIssue("42");
      const reset = Math.ceil(Date.now() / 1000) + 1;
      h.fake.answer({
        status: 429,
        headers: { "x-sentry-rate-limit-remaining": "0", "x-sentry-rate-limit-reset": String(reset) },
      });
      await h.api.getIssue({ issueId: "42" });
      expect(h.fake.received).toHaveLength(2);
      expect(h.fake.received[1]!.at).toBeGreaterThanOrEqual(reset * 1000 - 50);
    });

    it("fails at once with ResourceExhausted when Sentry asks for a longer wait than allowed", async () => {
      h = await setup();
      h.fake.answer({ status: 429, headers: { "retry-after": "120" } });
      const started = Date.now();
      const err = await failure(h.api.addComment({ issueId: "42", text: "hello" }));
      expect(err).toMatchObject({ code: Code.ResourceExhausted, status: 429 });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(h.fake.received).toHaveLength(1);
    });

    it("times out a hanging read on every attempt, then fails with DeadlineExceeded", async () => {
      h = await setup();
      h.fake.answer("hang", "hang", "hang");
      const err = await failure(h.api.getIssue({ issueId: "42" }));
      expect(err).toMatchObject({ code: Code.DeadlineExceeded, message: "sentry did not answer in time" });
      expect(h.fake.received).toHaveLength(3);
    });

    it("does not repeat a comment whose request hung", async () => {
      h = await setup();
      h.fake.answer("hang");
      const err = await failure(h.api.addComment({ issueId: "42", text: "hello" }));
      expect(err).toMatchObject({ code: Code.DeadlineExceeded });
      expect(h.fake.received).toHaveLength(1);
    });

    it("stops at the caller's deadline", async () => {
      h = await setup({ env: { SENTRY_TIMEOUT_MS: "10000" } });
      h.fake.answer("hang");
      const started = Date.now();
      const err = await failure(h.api.getIssue({ issueId: "42" }, { deadline: Date.now() + 200 }));
      expect(err).toMatchObject({ code: Code.DeadlineExceeded });
      expect(Date.now() - started).toBeLessThan(2_000);
    });

    it("opens the breaker after repeated 5xx: the next call fails fast without reaching Sentry", async () => {
      h = await setup({
        env: { SENTRY_MAX_ATTEMPTS: "1" },
        upstream: { breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 } },
      });
      h.fake.addIssue("42");
      h.fake.answer({ status: 500 }, { status: 502 }, { status: 503 });
      for (let i = 0; i < 3; i++)
        expect(await failure(h.api.getIssue({ issueId: "42" }))).toMatchObject({ code: Code.Unavailable });
      h.fake.reset();

      const err = await failure(h.api.getIssue({ issueId: "42" }));

      expect(err).toMatchObject({ code: Code.Unavailable, message: "sentry is failing; circuit open" });
      expect(h.fake.received).toEqual([]);
      expect(h.lines().some((l) => l.includes("upstream circuit opened"))).toBe(true);
    });

    it("does not open the breaker on refusals (4xx)", async () => {
      h = await setup({
        env: { SENTRY_MAX_ATTEMPTS: "1" },
        upstream: { breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 } },
      });
      h.fake.addIssue("42");
      for (let i = 0; i < 4; i++)
        expect(await failure(h.api.getIssue({ issueId: "404" }))).toMatchObject({ code: Code.NotFound });
      expect((await h.api.getIssue({ issueId: "42" })).issue?.id).toBe("42");
    });
  });

  describe("idempotency", () => {
    it("posts once for one key: the second call gets the first comment back, marked replayed", async () => {
      h = await setup();
      h.fake.addIssue("42");

      const first = await h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-1:ack" });
      const second = await h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-1:ack" });

      expect(h.fake.received.filter((r) => r.method === "POST")).toHaveLength(1);
      expect(second.comment).toEqual(first.comment);
      expect(first.call).toMatchObject({ replayed: false, dryRun: false });
      expect(second.call).toMatchObject({ replayed: true, dryRun: false, request: first.call!.request });
    });

    it("posts once when two calls with one key race", async () => {
      h = await setup();
      h.fake.addIssue("42");
      const [a, b] = await Promise.all([
        h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-2:ack" }),
        h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-2:ack" }),
      ]);
      expect(h.fake.notes.size).toBe(1);
      expect(a.comment?.id).toBe(b.comment?.id);
      expect([a.call?.replayed, b.call?.replayed].sort()).toEqual([false, true]);
    });

    it("posts again under another key, and for calls without a key", async () => {
      h = await setup();
      h.fake.addIssue("42");
      await h.api.addComment({ issueId: "42", text: "one", idempotencyKey: "a" });
      await h.api.addComment({ issueId: "42", text: "two", idempotencyKey: "b" });
      await h.api.addComment({ issueId: "42", text: "three" });
      await h.api.addComment({ issueId: "42", text: "four" });
      expect(h.fake.notes.size).toBe(4);
    });

    it("lets a retry post when the first call failed", async () => {
      h = await setup();
      h.fake.addIssue("42");
      h.fake.answer({ status: 503 });
      await failure(h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-3:ack" }));
      const res = await h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-3:ack" });
      expect(res.call?.replayed).toBe(false);
      expect(h.fake.received).toHaveLength(2);
      expect(h.fake.notes.size).toBe(1);
    });

    it("keeps results under the service's own prefix, scoped by method", async () => {
      h = await setup();
      h.fake.addIssue("42");
      await h.api.addComment({ issueId: "42", text: "x", idempotencyKey: "task-4:ack" });
      expect(await h.db.redis.keys(`${h.db.prefix}*`)).toEqual([`${h.db.prefix}idempotency:addComment:task-4:ack`]);
    });
  });

  describe("credentials", () => {
    it("fails naming the variable when there is no token and dry run is off, without calling Sentry", async () => {
      h = await setup({ token: false });
      for (const call of [
        h.api.getIssue({ issueId: "42" }),
        h.api.addComment({ issueId: "42", text: "x", idempotencyKey: "k" }),
        h.api.updateComment({ issueId: "42", commentId: "1", text: "x" }),
        h.api.updateIssue({ issueId: "42", status: IssueStatus.RESOLVED, assignee: "" }),
      ]) {
        const err = await failure(call);
        expect(err).toBeInstanceOf(MissingCredentialError);
        expect(err.message).toBe("SENTRY_AUTH_TOKEN is not set");
      }
      expect(h.fake.received).toEqual([]);
    });

    it("reads the token from SENTRY_AUTH_TOKEN_FILE and uses a changed file without a restart", async () => {
      const dir = await mkdtemp(join(tmpdir(), "hookmesh-sentry-"));
      try {
        const file = join(dir, "token");
        await writeFile(file, "sntryu_first\n");
        h = await setup({ token: false, env: { SENTRY_AUTH_TOKEN_FILE: file } });
        h.fake.tokens.add("sntryu_first").add("sntryu_second");
        h.fake.addIssue("42");
        await h.api.getIssue({ issueId: "42" });
        expect(h.fake.received.at(-1)!.headers.authorization).toBe("Bearer sntryu_first");

        await writeFile(file, "sntryu_second\n");
        await vi.waitFor(() => expect(h.token.get()).toBe("sntryu_second"), { timeout: 5_000, interval: 50 });
        await h.api.getIssue({ issueId: "42" });
        expect(h.fake.received.at(-1)!.headers.authorization).toBe("Bearer sntryu_second");
        expect(
          h.lines().some((l) => l.includes('"variable":"SENTRY_AUTH_TOKEN_FILE"') && l.includes("credential reloaded")),
        ).toBe(true);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("re-reads the token file on SIGHUP", async () => {
      const dir = await mkdtemp(join(tmpdir(), "hookmesh-sentry-"));
      try {
        const file = join(dir, "token");
        await writeFile(file, "sntryu_first");
        h = await setup({ token: false, env: { SENTRY_AUTH_TOKEN_FILE: file } });
        h.fake.tokens.add("sntryu_rotated");
        h.fake.addIssue("42");
        await writeFile(file, "sntryu_rotated");
        process.emit("SIGHUP", "SIGHUP");
        await h.api.getIssue({ issueId: "42" });
        expect(h.fake.received.at(-1)!.headers.authorization).toBe("Bearer sntryu_rotated");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("never logs the token nor puts it in an error", async () => {
      h = await setup({ env: { SENTRY_MAX_ATTEMPTS: "2" } });
      h.fake.addIssue("42");
      h.fake.answer({ status: 401, body: { detail: "Invalid token" } });
      const unauthenticated = await failure(h.api.getIssue({ issueId: "42" }));
      h.fake.answer({ status: 429, headers: { "retry-after": "0" } });
      await h.api.addComment({ issueId: "42", text: "x", idempotencyKey: "k" });
      h.fake.answer({ status: 500 }, { status: 500 });
      const unavailable = await failure(h.api.getIssue({ issueId: "42" }));
      h.fake.answer("hang", "hang");
      const timedOut = await failure(h.api.updateIssue({ issueId: "42", status: IssueStatus.RESOLVED, assignee: "" }));

      expect([unauthenticated, unavailable, timedOut].map((e) => (e as UpstreamError).code)).toEqual([
        Code.Unauthenticated,
        Code.Unavailable,
        Code.DeadlineExceeded,
      ]);
      expect(h.fake.received.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
      for (const err of [unauthenticated, unavailable, timedOut]) {
        expect(`${err.message} ${err.stack} ${JSON.stringify(err)}`).not.toContain(TOKEN);
      }
      expect(h.lines().some((l) => l.includes("retrying upstream call"))).toBe(true);
      expect(h.lines().join("\n")).not.toContain(TOKEN);
    });
  });

  describe("dry run", () => {
    it("sends nothing and answers with the exact request it would have sent", async () => {
      h = await setup({ token: false, env: { HOOKMESH_DRY_RUN: "1" } });

      const issue = await h.api.getIssue({ issueId: "42" });
      const added = await h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-9:ack" });
      const id = added.comment!.id;
      const edited = await h.api.updateComment({ issueId: "42", commentId: id, text: "Done" });
      const updated = await h.api.updateIssue({ issueId: "42", status: IssueStatus.RESOLVED, assignee: "unassign" });

      expect(h.fake.received).toEqual([]);
      const url = h.fake.url;
      expect(issue.call).toMatchObject({
        dryRun: true,
        replayed: false,
        request: { method: "GET", url: `${url}/issues/42/`, body: "" },
      });
      expect(issue.issue).toMatchObject({ id: "42", title: "dry run: nothing was sent to Sentry" });
      expect(added.call).toMatchObject({
        dryRun: true,
        request: { method: "POST", url: `${url}/issues/42/comments/`, body: '{"text":"Working on it"}' },
      });
      // A note id as Sentry writes them, the same for the same key; the edit takes it as any other.
      expect(id).toMatch(/^\d+$/);
      expect(added.comment?.text).toBe("Working on it");
      expect(edited.call).toMatchObject({
        dryRun: true,
        request: { method: "PUT", url: `${url}/issues/42/comments/${id}/`, body: '{"text":"Done"}' },
      });
      expect(edited.comment).toMatchObject({ id, text: "Done" });
      expect(updated.call).toMatchObject({
        dryRun: true,
        request: { method: "PUT", url: `${url}/issues/42/`, body: '{"status":"resolved","assignedTo":""}' },
      });
      expect(updated.issue).toMatchObject({ id: "42", status: IssueStatus.RESOLVED, assignee: "" });

      const dryRunLines = h
        .lines()
        .filter((l) => l.includes("dry run"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(dryRunLines.map((l) => [l.level, l.method, l.url, l.msg, l.missing])).toEqual([
        [30, "GET", `${url}/issues/42/`, "dry run: request not sent to Sentry", "SENTRY_AUTH_TOKEN"],
        [30, "POST", `${url}/issues/42/comments/`, "dry run: request not sent to Sentry", "SENTRY_AUTH_TOKEN"],
        [30, "PUT", `${url}/issues/42/comments/${id}/`, "dry run: request not sent to Sentry", "SENTRY_AUTH_TOKEN"],
        [30, "PUT", `${url}/issues/42/`, "dry run: request not sent to Sentry", "SENTRY_AUTH_TOKEN"],
      ]);
    });

    it("remembers no dry-run result: once a token is set, the same key posts for real", async () => {
      const dir = await mkdtemp(join(tmpdir(), "hookmesh-sentry-"));
      try {
        const file = join(dir, "token");
        await writeFile(file, "");
        h = await setup({ token: false, env: { SENTRY_AUTH_TOKEN_FILE: file, HOOKMESH_DRY_RUN: "1" } });
        h.fake.addIssue("42");
        const dry = await h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-10:ack" });
        expect(dry.call?.dryRun).toBe(true);

        await writeFile(file, TOKEN);
        process.emit("SIGHUP", "SIGHUP");
        const real = await h.api.addComment({ issueId: "42", text: "Working on it", idempotencyKey: "task-10:ack" });
        expect(real.call).toMatchObject({ dryRun: false, replayed: false });
        expect(real.comment?.id).toBe("1000");
        expect(h.fake.received).toHaveLength(1);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("is off when a token is set, even with dry run on", async () => {
      h = await setup({ env: { HOOKMESH_DRY_RUN: "1" } });
      h.fake.addIssue("42");
      const res = await h.api.getIssue({ issueId: "42" });
      expect(res.call?.dryRun).toBe(false);
      expect(h.fake.received).toHaveLength(1);
    });
  });
});
