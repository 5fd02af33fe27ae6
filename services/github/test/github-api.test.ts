import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { IdempotencyUnavailableError, InvalidRequestError, MissingCredentialError, UpstreamError } from "@hookmesh/kit";
import { failure } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ReactionTarget } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { error } from "./fake-github.js";
import { type Harness, REPO, setup, TOKEN } from "./helpers.js";

describe("GitHubApi with a personal token", () => {
  let h: Harness;
  afterEach(async () => {
    vi.useRealTimers();
    await h?.close();
  });

  it("creates a comment with GitHub's headers, bearer token and JSON body", async () => {
    h = await setup();
    h.fake.addIssue("acme", "widgets", 7);
    const res = await h.api.createComment({ repository: REPO, number: 7n, body: "On it: task t-1" });

    expect(h.fake.received).toHaveLength(1);
    const [req] = h.fake.received;
    expect(req).toMatchObject({
      method: "POST",
      path: "/repos/acme/widgets/issues/7/comments",
      query: "",
      body: { body: "On it: task t-1" },
    });
    expect(req!.headers).toMatchObject({
      authorization: `Bearer ${TOKEN}`,
      accept: "application/vnd.github+json",
      "x-github-api-version": "2022-11-28",
      "content-type": "application/json; charset=utf-8",
      "user-agent": "hookmesh",
    });
    expect(res.comment).toMatchObject({
      id: 1_000_000_001n,
      body: "On it: task t-1",
      htmlUrl: `http://${h.fake.host}/acme/widgets/issues/7#issuecomment-1000000001`,
    });
    expect(res.call).toMatchObject({
      dryRun: false,
      replayed: false,
      request: {
        method: "POST",
        url: `${h.fake.url}/repos/acme/widgets/issues/7/comments`,
        body: '{"body":"On it: task t-1"}',
      },
    });
  });

  it("edits a comment in place, then deletes it; deleting it again succeeds", async () => {
    h = await setup();
    h.fake.addIssue("acme", "widgets", 7);
    const created = await h.api.createComment({ repository: REPO, number: 7n, body: "Working…" });
    const id = created.comment!.id;
    const edited = await h.api.updateComment({ repository: REPO, commentId: id, body: "Done in 42 s" });
    const deleted = await h.api.deleteComment({ repository: REPO, commentId: id });
    const again = await h.api.deleteComment({ repository: REPO, commentId: id });

    expect(edited.comment).toMatchObject({ id, body: "Done in 42 s" });
    expect(edited.call?.request).toEqual(
      expect.objectContaining({
        method: "PATCH",
        url: `${h.fake.url}/repos/acme/widgets/issues/comments/${id}`,
        body: '{"body":"Done in 42 s"}',
      }),
    );
    expect(deleted.call?.request).toEqual(
      expect.objectContaining({
        method: "DELETE",
        url: `${h.fake.url}/repos/acme/widgets/issues/comments/${id}`,
        body: "",
      }),
    );
    expect(again.call?.request?.method).toBe("DELETE");
    expect(h.fake.lines()).toEqual([
      'POST /repos/acme/widgets/issues/7/comments {"body":"Working…"}',
      `PATCH /repos/acme/widgets/issues/comments/${id} {"body":"Done in 42 s"}`,
      `DELETE /repos/acme/widgets/issues/comments/${id}`,
      `DELETE /repos/acme/widgets/issues/comments/${id}`,
    ]);
    expect(h.fake.received[2]!.headers["content-type"]).toBeUndefined();
  });

  it("updating a comment that is gone is NotFound", async () => {
    h = await setup();
    const err = await failure(h.api.updateComment({ repository: REPO, commentId: 99n, body: "x" }));
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).code).toBe(Code.NotFound);
    expect(err.message).toBe("github answered 404: Not Found");
  });

  it("reacts to an issue (201) and again (200, the same reaction), and to a comment", async () => {
    h = await setup();
    h.fake.addIssue("acme", "widgets", 7);
    const comment = await h.api.createComment({ repository: REPO, number: 7n, body: "hi" });
    const first = await h.api.addReaction({
      repository: REPO,
      target: ReactionTarget.ISSUE,
      number: 7n,
      commentId: 0n,
      content: "eyes",
    });
    const second = await h.api.addReaction({
      repository: REPO,
      target: ReactionTarget.ISSUE,
      number: 7n,
      commentId: 0n,
      content: "eyes",
    });
    const onComment = await h.api.addReaction({
      repository: REPO,
      target: ReactionTarget.ISSUE_COMMENT,
      number: 0n,
      commentId: comment.comment!.id,
      content: "+1",
    });

    expect(second.reactionId).toBe(first.reactionId);
    expect(onComment.reactionId).not.toBe(first.reactionId);
    expect(h.fake.lines().slice(1)).toEqual([
      'POST /repos/acme/widgets/issues/7/reactions {"content":"eyes"}',
      'POST /repos/acme/widgets/issues/7/reactions {"content":"eyes"}',
      `POST /repos/acme/widgets/issues/comments/${comment.comment!.id}/reactions {"content":"+1"}`,
    ]);
  });

  it("refuses a malformed request before calling GitHub", async () => {
    h = await setup();
    const cases = [
      h.api.createComment({ repository: undefined, number: 7n, body: "x" }),
      h.api.createComment({ repository: { ...REPO, owner: "acme/../../user" }, number: 7n, body: "x" }),
      h.api.createComment({ repository: { ...REPO, repo: "" }, number: 7n, body: "x" }),
      h.api.createComment({ repository: REPO, number: 0n, body: "x" }),
      h.api.createComment({ repository: REPO, number: 7n, body: "  " }),
      h.api.updateComment({ repository: REPO, commentId: -1n, body: "x" }),
      h.api.addReaction({
        repository: REPO,
        target: ReactionTarget.ISSUE,
        number: 7n,
        commentId: 0n,
        content: "thumbsup",
      }),
      h.api.addReaction({
        repository: REPO,
        target: ReactionTarget.UNSPECIFIED,
        number: 7n,
        commentId: 0n,
        content: "eyes",
      }),
      h.api.addReaction({
        repository: REPO,
        target: ReactionTarget.ISSUE_COMMENT,
        number: 7n,
        commentId: 0n,
        content: "eyes",
      }),
      h.api.getIssue({ repository: REPO, number: 0n }),
    ];
    for (const call of cases) expect(await failure(call)).toBeInstanceOf(InvalidRequestError);
    expect(h.fake.received).toHaveLength(0);
  });

  it("reads an issue, a pull request seen as an issue, and a pull request", async () => {
    h = await setup();
    h.fake.addIssue("acme", "widgets", 7);
    h.fake.addPull("acme", "widgets", 8);
    const issue = await h.api.getIssue({ repository: REPO, number: 7n });
    const prAsIssue = await h.api.getIssue({ repository: REPO, number: 8n });
    const pr = await h.api.getPullRequest({ repository: REPO, number: 8n });

    expect(issue.issue).toMatchObject({
      number: 7n,
      title: "Crash when the config file is empty",
      body: expect.stringContaining("@hookmesh please fix"),
      state: "open",
      htmlUrl: `http://${h.fake.host}/acme/widgets/issues/7`,
      author: "octocat",
      labels: ["bug", "good first issue"],
      pullRequest: false,
    });
    expect(prAsIssue.issue?.pullRequest).toBe(true);
    expect(pr.pullRequest).toMatchObject({
      number: 8n,
      title: "Handle an empty config file",
      body: "",
      state: "open",
      htmlUrl: `http://${h.fake.host}/acme/widgets/pull/8`,
      author: "hubot",
      headRef: "fix-empty-config",
      headSha: "6dcb09b5b57875f334f61aebed695e2e4193db5e",
      baseRef: "main",
      draft: true,
      merged: false,
    });
    expect(h.fake.lines()).toEqual([
      "GET /repos/acme/widgets/issues/7",
      "GET /repos/acme/widgets/issues/8",
      "GET /repos/acme/widgets/pulls/8",
    ]);
    expect(h.fake.received[0]!.headers["content-type"]).toBeUndefined();
    expect(pr.call?.request).toEqual(
      expect.objectContaining({ method: "GET", url: `${h.fake.url}/repos/acme/widgets/pulls/8`, body: "" }),
    );
  });

  it("reads a person's permission on a repository: GitHub's base permission and their role", async () => {
    h = await setup();
    h.fake.roles.set("acme/widgets:maintainer", "maintain");
    const maintainer = await h.api.getRepositoryPermission({ repository: REPO, login: "maintainer" });
    const stranger = await h.api.getRepositoryPermission({ repository: REPO, login: "stranger" });
    expect(h.fake.lines()).toEqual([
      "GET /repos/acme/widgets/collaborators/maintainer/permission",
      "GET /repos/acme/widgets/collaborators/stranger/permission",
    ]);
    expect([maintainer.permission, maintainer.roleName]).toEqual(["write", "maintain"]);
    expect([stranger.permission, stranger.roleName]).toEqual(["read", "read"]);
    const err = await failure(h.api.getRepositoryPermission({ repository: REPO, login: "../admin" }));
    expect(err).toBeInstanceOf(InvalidRequestError);
  });

  describe("retries", () => {
    it("retries an idempotent call after 5xx", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      h.fake.answer({ status: 502, body: { message: "Server Error" } }, { status: 503 });
      const res = await h.api.getIssue({ repository: REPO, number: 7n });
      expect(res.issue?.number).toBe(7n);
      expect(h.fake.received).toHaveLength(3);
    });

    it("does not retry a create after 5xx (it may have been acted on)", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      h.fake.answer({ status: 500, body: { message: "Server Error" } });
      const err = await failure(h.api.createComment({ repository: REPO, number: 7n, body: "x" }));
      expect((err as UpstreamError).code).toBe(Code.Unavailable);
      expect(h.fake.received).toHaveLength(1);
    });

    it("retries a create after 429, waiting what Retry-After says", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      h.fake.answer({ status: 429, headers: { "retry-after": "1" }, body: { message: "Too many requests" } });
      const res = await h.api.createComment({ repository: REPO, number: 7n, body: "x" });
      expect(res.comment?.id).toBeGreaterThan(0n);
      expect(h.fake.received).toHaveLength(2);
      expect(h.fake.received[1]!.at - h.fake.received[0]!.at).toBeGreaterThanOrEqual(990);
      expect(h.fake.received[1]!.body).toEqual({ body: "x" });
    });

    it("waits for X-RateLimit-Reset when the primary limit is used up (403, remaining 0)", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      const reset = Math.ceil(Date.now() / 1000) + 1;
      h.fake.answer({
        status: 403,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) },
        body: {
          message: "API rate limit exceeded for user ID 1.",
          documentation_url: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        },
      });
      await h.api.createComment({ repository: REPO, number: 7n, body: "x" });
      expect(h.fake.received).toHaveLength(2);
      expect(h.fake.received[1]!.at).toBeGreaterThanOrEqual(reset * 1000 - 10);
    });

    it("waits Retry-After on a secondary rate limit, and gives up with ResourceExhausted when it names no wait", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      const secondary = {
        message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
      };
      h.fake.answer({ status: 403, headers: { "retry-after": "1" }, body: secondary });
      await h.api.createComment({ repository: REPO, number: 7n, body: "x" });
      expect(h.fake.received).toHaveLength(2);
      expect(h.fake.received[1]!.at - h.fake.received[0]!.at).toBeGreaterThanOrEqual(990);

      // Without Retry-After GitHub asks for at least a minute, beyond what a call may wait.
      h.fake.answer({ status: 403, body: secondary });
      const started = Date.now();
      const err = await failure(h.api.createComment({ repository: REPO, number: 7n, body: "y" }));
      expect((err as UpstreamError).code).toBe(Code.ResourceExhausted);
      expect(Date.now() - started).toBeLessThan(500);
      expect(h.fake.received).toHaveLength(3);
    });

    it("does not retry a 403 that is a refusal, and maps a locked issue to FailedPrecondition", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7, { locked: true });
      h.fake.answer({ status: 403, body: { message: "Resource not accessible by personal access token" } });
      const denied = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
      expect((denied as UpstreamError).code).toBe(Code.PermissionDenied);
      expect(denied.message).toBe("github answered 403: Resource not accessible by personal access token");
      const locked = await failure(h.api.createComment({ repository: REPO, number: 7n, body: "x" }));
      expect((locked as UpstreamError).code).toBe(Code.FailedPrecondition);
      expect(h.fake.received).toHaveLength(2);
    });

    it("gives up with DeadlineExceeded when GitHub does not answer", async () => {
      h = await setup({ env: { GITHUB_MAX_ATTEMPTS: "2" } });
      h.fake.answer("hang", "hang");
      const started = Date.now();
      const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
      expect((err as UpstreamError).code).toBe(Code.DeadlineExceeded);
      expect(h.fake.received).toHaveLength(2);
      expect(Date.now() - started).toBeLessThan(2_000);
    });

    it("never runs past the caller's deadline", async () => {
      h = await setup({ env: { GITHUB_TIMEOUT_MS: "5000" } });
      h.fake.answer("hang");
      const started = Date.now();
      const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }, { deadline: Date.now() + 200 }));
      expect((err as UpstreamError).code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(1_000);
    });

    it("opens the breaker after repeated 5xx: the next call fails fast without reaching GitHub", async () => {
      h = await setup({
        env: { GITHUB_MAX_ATTEMPTS: "1" },
        upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } },
      });
      for (let i = 0; i < 3; i++) {
        h.fake.answer({ status: 502 });
        expect(((await failure(h.api.getIssue({ repository: REPO, number: 7n }))) as UpstreamError).code).toBe(
          Code.Unavailable,
        );
      }
      const started = Date.now();
      const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
      expect((err as UpstreamError).code).toBe(Code.Unavailable);
      expect(err.message).toBe("github is failing; circuit open");
      expect(Date.now() - started).toBeLessThan(50);
      expect(h.fake.received).toHaveLength(3);
      expect(h.lines().some((l) => l.includes("upstream circuit opened"))).toBe(true);
    });

    it("does not open the breaker on refusals (404)", async () => {
      h = await setup({
        env: { GITHUB_MAX_ATTEMPTS: "1" },
        upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } },
      });
      for (let i = 0; i < 5; i++) await failure(h.api.getIssue({ repository: REPO, number: 404n }));
      expect(h.fake.received).toHaveLength(5);
    });
  });

  describe("idempotency", () => {
    it("posts a keyed comment once; the same key again replays the first result", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      const first = await h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-1:ack" });
      const again = await h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-1:ack" });
      const other = await h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-2:ack" });

      expect(h.fake.received.filter((r) => r.method === "POST")).toHaveLength(2);
      expect(again.comment).toEqual(first.comment);
      expect(again.call).toMatchObject({ replayed: true, dryRun: false, request: first.call?.request });
      expect(first.call?.replayed).toBe(false);
      expect(other.comment?.id).not.toBe(first.comment?.id);
      expect(await h.db.redis.exists(`${h.db.prefix}idempotency:createComment:t-1:ack`)).toBe(1);
    });

    it("concurrent calls with one key post once", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      const results = await Promise.all(
        [1, 2, 3].map(() =>
          h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-1:ack" }),
        ),
      );
      expect(h.fake.received).toHaveLength(1);
      expect(new Set(results.map((r) => r.comment?.id)).size).toBe(1);
      expect(results.filter((r) => r.call?.replayed)).toHaveLength(2);
    });

    it("a failed keyed call frees its key, so a retry posts", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      h.fake.answer({ status: 500 });
      await failure(h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-1:ack" }));
      const retried = await h.api.createComment({
        repository: REPO,
        number: 7n,
        body: "ack",
        idempotencyKey: "t-1:ack",
      });
      expect(retried.call?.replayed).toBe(false);
      expect(h.fake.received).toHaveLength(2);
    });

    it("a keyed call fails Unavailable, without posting, when the store is down", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      h.redis.disconnect();
      const err = await failure(
        h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-1:ack" }),
      );
      expect(err).toBeInstanceOf(IdempotencyUnavailableError);
      expect(h.fake.received).toHaveLength(0);
    });

    it("answers the posted comment when the store fails once GitHub answered, so that the caller does not post again", async () => {
      h = await setup();
      h.fake.addIssue("acme", "widgets", 7);
      // The key is claimed; the store goes away while GitHub posts.
      h.fake.answerTo("POST /repos/acme/widgets/issues/7/comments", () => {
        h.redis.disconnect();
        return undefined;
      });
      const res = await h.api.createComment({ repository: REPO, number: 7n, body: "ack", idempotencyKey: "t-1:ack" });
      expect(res).toMatchObject({ comment: { body: "ack" }, call: { dryRun: false, replayed: false } });
      expect(h.fake.comments.size).toBe(1);
      expect(h.lines().some((l) => l.includes("GitHub answered, but the idempotency key could not be recorded"))).toBe(
        true,
      );
    });
  });

  describe("credentials", () => {
    it("without credentials and without dry run, fails naming GITHUB_TOKEN, sending nothing", async () => {
      h = await setup({ auth: "none" });
      const err = await failure(h.api.createComment({ repository: REPO, number: 7n, body: "x" }));
      expect(err).toBeInstanceOf(MissingCredentialError);
      expect((err as MissingCredentialError).variable).toBe("GITHUB_TOKEN");
      expect(err.message).toContain("GITHUB_TOKEN is not set");
      expect(err.message).toContain("GITHUB_APP_ID");
      expect(h.fake.received).toHaveLength(0);
    });

    it("a 401 with a personal token is Unauthenticated, not retried", async () => {
      h = await setup({ env: { GITHUB_TOKEN: "ghp_revoked" } });
      const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
      expect((err as UpstreamError).code).toBe(Code.Unauthenticated);
      expect(err.message).toBe("github answered 401: Bad credentials");
      expect(err.message).not.toContain("ghp_revoked");
      expect(h.fake.received).toHaveLength(1);
    });

    it("reads GITHUB_TOKEN_FILE again when the file changes: the next call uses the new token", async () => {
      const dir = await mkdtemp(join(tmpdir(), "hookmesh-github-"));
      try {
        const file = join(dir, "token");
        await writeFile(file, "ghp_first\n");
        h = await setup({ auth: "none", env: { GITHUB_TOKEN_FILE: file } });
        h.fake.addToken("ghp_first");
        h.fake.addToken("ghp_second");
        h.fake.addIssue("acme", "widgets", 7);
        await h.api.getIssue({ repository: REPO, number: 7n });
        await writeFile(file, "ghp_second\n");
        await vi.waitFor(() => expect(h.token.get()).toBe("ghp_second"), { timeout: 5_000, interval: 50 });
        await h.api.getIssue({ repository: REPO, number: 7n });
        expect(h.fake.received.map((r) => r.headers.authorization)).toEqual(["Bearer ghp_first", "Bearer ghp_second"]);
        expect(h.lines().join("\n")).not.toMatch(/ghp_first|ghp_second/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("reads the file again on SIGHUP", async () => {
      const dir = await mkdtemp(join(tmpdir(), "hookmesh-github-"));
      try {
        const file = join(dir, "token");
        await writeFile(file, "ghp_first");
        h = await setup({ auth: "none", env: { GITHUB_TOKEN_FILE: file } });
        h.fake.addToken("ghp_second");
        h.fake.addIssue("acme", "widgets", 7);
        await writeFile(file, "ghp_second");
        process.emit("SIGHUP", "SIGHUP");
        await h.api.getIssue({ repository: REPO, number: 7n });
        expect(h.fake.received[0]!.headers.authorization).toBe("Bearer ghp_second");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe("dry run", () => {
    it("sends nothing, answers the exact request with stable synthetic ids, and logs it", async () => {
      h = await setup({ auth: "none", env: { HOOKMESH_DRY_RUN: "1" } });
      const created = await h.api.createComment({
        repository: REPO,
        number: 7n,
        body: "On it",
        idempotencyKey: "t-1:ack",
      });
      const again = await h.api.createComment({
        repository: REPO,
        number: 7n,
        body: "On it",
        idempotencyKey: "t-1:ack",
      });
      const other = await h.api.createComment({
        repository: REPO,
        number: 7n,
        body: "On it",
        idempotencyKey: "t-2:ack",
      });
      const id = created.comment!.id;
      const edited = await h.api.updateComment({ repository: REPO, commentId: id, body: "Done" });
      const deleted = await h.api.deleteComment({ repository: REPO, commentId: id });
      const reacted = await h.api.addReaction({
        repository: REPO,
        target: ReactionTarget.ISSUE,
        number: 7n,
        commentId: 0n,
        content: "eyes",
      });
      const issue = await h.api.getIssue({ repository: REPO, number: 7n });
      const pr = await h.api.getPullRequest({ repository: REPO, number: 8n });
      const clone = await h.api.createCloneToken({ repository: REPO });

      expect(h.fake.received).toHaveLength(0);
      expect(id).toBeGreaterThan(0n);
      expect(id).toBeLessThan(2n ** 53n);
      expect(created.comment).toMatchObject({ body: "On it" });
      expect(created.call).toMatchObject({
        dryRun: true,
        replayed: false,
        request: {
          method: "POST",
          url: `${h.fake.url}/repos/acme/widgets/issues/7/comments`,
          body: '{"body":"On it"}',
        },
      });
      // The same key describes the same comment; dry runs are not remembered, so none is a replay.
      expect(again.comment?.id).toBe(id);
      expect(again.call?.replayed).toBe(false);
      expect(other.comment?.id).not.toBe(id);
      // The acknowledgment's id is one the edit takes: an ordinary dry-run call, its request in full.
      expect(edited.comment).toMatchObject({ id, body: "Done" });
      expect(edited.call).toMatchObject({
        dryRun: true,
        request: {
          method: "PATCH",
          url: `${h.fake.url}/repos/acme/widgets/issues/comments/${id}`,
          body: '{"body":"Done"}',
        },
      });
      expect(deleted.call).toMatchObject({
        dryRun: true,
        request: { method: "DELETE", url: `${h.fake.url}/repos/acme/widgets/issues/comments/${id}`, body: "" },
      });
      expect(reacted.reactionId).toBeGreaterThan(0n);
      expect(reacted.call).toMatchObject({ dryRun: true, request: { body: '{"content":"eyes"}' } });
      expect(issue.issue).toMatchObject({ number: 7n, title: "dry run: nothing was sent to GitHub" });
      expect(pr.pullRequest).toMatchObject({ number: 8n, title: "dry run: nothing was sent to GitHub" });
      expect(clone).toMatchObject({
        token: "",
        cloneUrl: `http://${h.fake.host}/acme/widgets.git`,
        call: {
          dryRun: true,
          request: {
            method: "POST",
            url: `${h.fake.url}/app/installations/777/access_tokens`,
            body: '{"repositories":["widgets"],"permissions":{"contents":"read"}}',
          },
        },
      });
      const dryRunLines = h.lines().filter((l) => l.includes("dry run"));
      expect(dryRunLines).toHaveLength(9);
      expect(JSON.parse(dryRunLines[0]!)).toMatchObject({
        level: 30,
        msg: "dry run: request not sent to GitHub",
        upstream: "github",
        method: "POST",
        url: `${h.fake.url}/repos/acme/widgets/issues/7/comments`,
        missing: "GITHUB_TOKEN",
      });
    });
  });

  it("never logs the token nor puts it in an error", async () => {
    h = await setup();
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.createComment({ repository: REPO, number: 7n, body: "x", idempotencyKey: "k" });
    await h.api.createComment({ repository: REPO, number: 7n, body: "x", idempotencyKey: "k" });
    h.fake.answer({ status: 500 }, { status: 500 }, { status: 500 }, error(401, "Bad credentials"), {
      status: 429,
      headers: { "retry-after": "0" },
    });
    const errors = [
      await failure(h.api.getIssue({ repository: REPO, number: 7n })),
      await failure(h.api.getIssue({ repository: REPO, number: 7n })),
    ];
    await h.api.getIssue({ repository: REPO, number: 7n });
    const logged = h.lines().join("\n");
    expect(logged).not.toContain(TOKEN);
    expect(logged).toContain("retrying upstream call");
    for (const err of errors) expect(`${err.message} ${String(err.stack)}`).not.toContain(TOKEN);
  });
});
