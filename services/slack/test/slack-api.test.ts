import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { IdempotencyUnavailableError, InvalidRequestError, MissingCredentialError, UpstreamError } from "@hookmesh/kit";
import { failure } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { CHANNEL, TEST_TOKEN } from "./fake-slack.js";
import { type Harness, type HarnessOptions, setup } from "./helpers.js";

const POST = { channel: CHANNEL, threadTs: "", text: "on it", idempotencyKey: "" };

/** The UpstreamError a call to Slack fails with. */
const rejected = (call: Promise<unknown>) => failure(call, UpstreamError);

/** Slack's `ok: false` answers and the codes callers get for them. */
const OK_FALSE: [method: string, error: string, code: Code][] = [
  ["chat.postMessage", "channel_not_found", Code.NotFound],
  ["chat.update", "message_not_found", Code.NotFound],
  ["chat.postMessage", "thread_not_found", Code.NotFound],
  ["chat.postMessage", "not_authed", Code.Unauthenticated],
  ["chat.update", "invalid_auth", Code.Unauthenticated],
  ["reactions.add", "token_revoked", Code.Unauthenticated],
  ["chat.postMessage", "account_inactive", Code.Unauthenticated],
  ["chat.postMessage", "not_in_channel", Code.PermissionDenied],
  ["chat.update", "cant_update_message", Code.PermissionDenied],
  ["chat.postMessage", "restricted_action", Code.PermissionDenied],
  ["chat.postMessage", "invalid_arguments", Code.InvalidArgument],
  ["chat.postMessage", "msg_too_long", Code.InvalidArgument],
  ["chat.update", "no_text", Code.InvalidArgument],
  ["chat.postMessage", "invalid_blocks", Code.InvalidArgument],
  ["reactions.add", "invalid_name", Code.InvalidArgument],
  ["chat.postMessage", "is_archived", Code.FailedPrecondition],
  ["chat.update", "edit_window_closed", Code.FailedPrecondition],
  ["chat.postMessage", "internal_error", Code.Internal],
  ["chat.postMessage", "team_is_on_fire", Code.Unknown],
];

/** The JSON headers every Web API call carries, with the bot token. */
const JSON_HEADERS = {
  authorization: `Bearer ${TEST_TOKEN}`,
  "content-type": "application/json; charset=utf-8",
  accept: "application/json",
};

describe("SlackApi", () => {
  let t: Harness;
  const setUp = async (options: HarnessOptions = {}) => (t = await setup(options));

  afterEach(async () => {
    await t?.close();
    expect(t.lines().join("\n")).not.toContain(TEST_TOKEN);
  });

  describe("requests", () => {
    it("posts a message with chat.postMessage and returns its channel and ts", async () => {
      await setUp();
      const res = await t.api.postMessage({ ...POST, channel: "#general" });
      expect(t.fake.received).toMatchObject([
        {
          method: "POST",
          path: "/chat.postMessage",
          query: "",
          headers: JSON_HEADERS,
          body: { channel: "#general", text: "on it" },
        },
      ]);
      expect(res).toMatchObject({
        channel: CHANNEL,
        ts: t.fake.messages[0]!.ts,
        call: {
          dryRun: false,
          replayed: false,
          request: {
            method: "POST",
            url: `${t.fake.url}/chat.postMessage`,
            body: '{"channel":"#general","text":"on it"}',
          },
        },
      });
    });

    it("replies in a thread with thread_ts", async () => {
      await setUp();
      const parent = t.fake.seed("@hookmesh fix the build");
      const res = await t.api.postMessage({ ...POST, threadTs: parent, text: "*Working* on it" });
      expect(t.fake.calls("chat.postMessage")[0]!.body).toEqual({
        channel: CHANNEL,
        text: "*Working* on it",
        thread_ts: parent,
      });
      expect(res.call?.request?.body).toBe(
        JSON.stringify({ channel: CHANNEL, text: "*Working* on it", thread_ts: parent }),
      );
      expect(t.fake.messages[1]).toMatchObject({ threadTs: parent, ts: res.ts });
    });

    it("updates a message with chat.update", async () => {
      await setUp();
      const ts = t.fake.seed("working");
      const res = await t.api.updateMessage({ channel: CHANNEL, ts, text: "done in 42s" });
      expect(t.fake.received).toMatchObject([
        {
          method: "POST",
          path: "/chat.update",
          query: "",
          headers: JSON_HEADERS,
          body: { channel: CHANNEL, ts, text: "done in 42s" },
        },
      ]);
      expect(res).toMatchObject({
        channel: CHANNEL,
        ts,
        call: { dryRun: false, request: { method: "POST", url: `${t.fake.url}/chat.update` } },
      });
      expect(t.fake.messages[0]!.text).toBe("done in 42s");
    });

    it("adds a reaction with reactions.add, taking the name with or without colons", async () => {
      await setUp();
      const ts = t.fake.seed("@hookmesh look");
      const res = await t.api.addReaction({ channel: CHANNEL, timestamp: ts, name: ":eyes:" });
      expect(t.fake.received).toMatchObject([
        {
          method: "POST",
          path: "/reactions.add",
          query: "",
          headers: JSON_HEADERS,
          body: { channel: CHANNEL, timestamp: ts, name: "eyes" },
        },
      ]);
      expect(res.call).toMatchObject({
        dryRun: false,
        request: {
          method: "POST",
          url: `${t.fake.url}/reactions.add`,
          body: JSON.stringify({ channel: CHANNEL, timestamp: ts, name: "eyes" }),
        },
      });
      expect([...t.fake.messages[0]!.reactions]).toEqual(["eyes"]);
    });

    it("takes already_reacted as success: adding a reaction twice is one reaction", async () => {
      await setUp();
      const ts = t.fake.seed("@hookmesh look");
      await t.api.addReaction({ channel: CHANNEL, timestamp: ts, name: "eyes" });
      await expect(t.api.addReaction({ channel: CHANNEL, timestamp: ts, name: "eyes" })).resolves.toMatchObject({
        call: { dryRun: false },
      });
      expect(t.fake.calls("reactions.add")).toHaveLength(2);
      expect([...t.fake.messages[0]!.reactions]).toEqual(["eyes"]);
    });

    it("refuses requests with missing fields before calling Slack", async () => {
      await setUp();
      await expect(t.api.postMessage({ ...POST, channel: "" })).rejects.toThrow(
        new InvalidRequestError("channel is required", "channel"),
      );
      await expect(t.api.postMessage({ ...POST, text: " " })).rejects.toThrow(
        new InvalidRequestError("text is required", "text"),
      );
      await expect(t.api.postMessage({ ...POST, idempotencyKey: "k".repeat(513) })).rejects.toThrow(
        InvalidRequestError,
      );
      await expect(t.api.updateMessage({ channel: CHANNEL, ts: "", text: "x" })).rejects.toThrow(
        new InvalidRequestError("ts is required", "ts"),
      );
      await expect(t.api.addReaction({ channel: CHANNEL, timestamp: "1.2", name: "::" })).rejects.toThrow(
        new InvalidRequestError("name is required", "name"),
      );
      expect(t.fake.received).toEqual([]);
    });
  });

  describe("Slack's ok:false errors", () => {
    it.each(OK_FALSE.map(([method, error, code]) => ({ method, error, code, name: Code[code] })))(
      "$method answering $error fails with $name",
      async ({ method, error, code }) => {
        await setUp();
        t.fake.script(method, { body: { ok: false, error } });
        const call =
          method === "chat.postMessage"
            ? t.api.postMessage(POST)
            : method === "chat.update"
              ? t.api.updateMessage({ channel: CHANNEL, ts: "1.000100", text: "x" })
              : t.api.addReaction({ channel: CHANNEL, timestamp: "1.000100", name: "eyes" });
        const err = await rejected(call);
        expect({ code: err.code, message: err.message, status: err.status }).toEqual({
          code,
          message: `slack ${method}: ${error}`,
          status: 200,
        });
        expect(t.fake.calls(method)).toHaveLength(1);
      },
    );

    it("maps the answers of the fake workspace itself (unknown channel, wrong token)", async () => {
      await setUp();
      expect((await rejected(t.api.postMessage({ ...POST, channel: "C0NOPE" }))).code).toBe(Code.NotFound);
      t.fake.token = "xoxb-rotated";
      const err = await rejected(t.api.postMessage(POST));
      expect([err.code, err.message]).toEqual([Code.Unauthenticated, "slack chat.postMessage: invalid_auth"]);
    });

    it("says which scope a missing_scope needs and what invalid_arguments was about", async () => {
      await setUp();
      t.fake.script("chat.postMessage", {
        body: { ok: false, error: "missing_scope", needed: "chat:write", provided: "reactions:write" },
      });
      t.fake.script("chat.update", {
        body: {
          ok: false,
          error: "invalid_arguments",
          response_metadata: { messages: ["[ERROR] missing required field: ts"] },
        },
      });
      const scope = await rejected(t.api.postMessage(POST));
      expect([scope.code, scope.message]).toEqual([
        Code.PermissionDenied,
        "slack chat.postMessage: missing_scope (needed: chat:write)",
      ]);
      const args = await rejected(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }));
      expect([args.code, args.message]).toEqual([
        Code.InvalidArgument,
        "slack chat.update: invalid_arguments ([ERROR] missing required field: ts)",
      ]);
    });

    it("maps HTTP error answers: 401, 403 and 404 with Slack's error name, 422 by HTTP", async () => {
      await setUp();
      t.fake.script(
        "chat.postMessage",
        { status: 401, body: { ok: false, error: "invalid_auth" } },
        { status: 403, body: { ok: false, error: "missing_scope" } },
        { status: 404, body: { ok: false, error: "channel_not_found" } },
        { status: 422, body: { ok: false, error: "something_new" } },
        { status: 403, body: "<html>Forbidden</html>" },
      );
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push((await rejected(t.api.postMessage(POST))).code);
      expect(codes).toEqual([
        Code.Unauthenticated,
        Code.PermissionDenied,
        Code.NotFound,
        Code.InvalidArgument,
        Code.PermissionDenied,
      ]);
      expect(t.fake.calls("chat.postMessage")).toHaveLength(5);
    });

    it("fails with a hint when SLACK_API_URL answers something that is not the Web API", async () => {
      await setUp();
      t.fake.script("chat.postMessage", { body: "<html>Slack</html>" }, { body: { ok: true } });
      for (let i = 0; i < 2; i++) {
        const err = await rejected(t.api.postMessage(POST));
        expect(err.code).toBe(Code.Unknown);
        expect(err.message).toContain("SLACK_API_URL must be the Web API root");
      }
    });
  });

  describe("retries and rate limits", () => {
    it("retries an update after 5xx answers", async () => {
      await setUp();
      const ts = t.fake.seed("working");
      t.fake.script(
        "chat.update",
        { status: 500, body: "oops" },
        { status: 503, body: { ok: false, error: "service_unavailable" } },
      );
      await expect(t.api.updateMessage({ channel: CHANNEL, ts, text: "done" })).resolves.toMatchObject({ ts });
      expect(t.fake.calls("chat.update")).toHaveLength(3);
      expect(t.fake.calls("chat.update").map((r) => r.body)).toEqual(
        Array(3).fill({ channel: CHANNEL, ts, text: "done" }),
      );
    });

    it("gives up on an update after its attempts with Unavailable", async () => {
      await setUp();
      t.fake.script("chat.update", ...Array(3).fill({ status: 502 }));
      const err = await rejected(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "done" }));
      expect([err.code, err.status]).toEqual([Code.Unavailable, 502]);
      expect(t.fake.calls("chat.update")).toHaveLength(3);
    });

    it("never retries a post after a 5xx: Slack may have posted it", async () => {
      await setUp();
      t.fake.script("chat.postMessage", { status: 500 });
      const err = await rejected(t.api.postMessage(POST));
      expect([err.code, err.status]).toEqual([Code.Unavailable, 500]);
      expect(t.fake.calls("chat.postMessage")).toHaveLength(1);
      expect(t.fake.messages).toEqual([]);
    });

    it("retries a post after 429, waiting the Retry-After seconds", async () => {
      await setUp();
      t.fake.script("chat.postMessage", {
        status: 429,
        headers: { "retry-after": "1" },
        body: { ok: false, error: "ratelimited" },
      });
      const started = Date.now();
      const res = await t.api.postMessage(POST);
      expect(Date.now() - started).toBeGreaterThanOrEqual(950);
      expect(res.ts).toBe(t.fake.messages[0]!.ts);
      expect(t.fake.calls("chat.postMessage")).toHaveLength(2);
      expect(t.fake.messages).toHaveLength(1);
    });

    it("takes an HTTP 200 ratelimited answer as a rate limit too", async () => {
      await setUp();
      t.fake.script("chat.postMessage", { headers: { "retry-after": "0" }, body: { ok: false, error: "ratelimited" } });
      await expect(t.api.postMessage(POST)).resolves.toMatchObject({ channel: CHANNEL });
      expect(t.fake.calls("chat.postMessage")).toHaveLength(2);
    });

    it("fails with ResourceExhausted at once when Slack asks for a longer wait than the call may take", async () => {
      await setUp();
      t.fake.script("reactions.add", {
        status: 429,
        headers: { "retry-after": "120" },
        body: { ok: false, error: "ratelimited" },
      });
      const started = Date.now();
      const err = await rejected(t.api.addReaction({ channel: CHANNEL, timestamp: "1.2", name: "eyes" }));
      expect([err.code, err.status]).toEqual([Code.ResourceExhausted, 429]);
      expect(Date.now() - started).toBeLessThan(500);
      expect(t.fake.calls("reactions.add")).toHaveLength(1);
    });

    it("fails a post that gets no answer with DeadlineExceeded, after one attempt", async () => {
      await setUp();
      t.fake.script("chat.postMessage", "hang");
      const err = await rejected(t.api.postMessage(POST));
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(t.fake.calls("chat.postMessage")).toHaveLength(1);
    });

    it("retries an update that gets no answer, then succeeds", async () => {
      await setUp();
      const ts = t.fake.seed("working");
      t.fake.script("chat.update", "hang");
      await expect(t.api.updateMessage({ channel: CHANNEL, ts, text: "done" })).resolves.toMatchObject({ ts });
      expect(t.fake.calls("chat.update")).toHaveLength(2);
    });

    it("stops at the caller's deadline", async () => {
      await setUp({ env: { SLACK_TIMEOUT_MS: "5000" } });
      t.fake.script("chat.update", "hang");
      const started = Date.now();
      const err = await rejected(
        t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }, { deadline: Date.now() + 200 }),
      );
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(1_000);
    });

    it("opens the breaker after repeated 5xx: the next call fails fast without reaching Slack", async () => {
      await setUp({ upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } } });
      t.fake.script("chat.update", ...Array(10).fill({ status: 500 }));
      await rejected(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }));
      await rejected(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }));
      t.fake.reset();
      const err = await rejected(t.api.postMessage(POST));
      expect([err.code, err.message]).toEqual([Code.Unavailable, "slack is failing; circuit open"]);
      expect(t.fake.received).toEqual([]);
      expect(t.lines().some((l) => l.includes("upstream circuit opened"))).toBe(true);
    });

    it("keeps the breaker closed on Slack's refusals", async () => {
      await setUp({ upstream: { breaker: { volumeThreshold: 2, resetTimeoutMs: 60_000 } } });
      t.fake.script("chat.postMessage", ...Array(4).fill({ status: 403, body: { ok: false, error: "missing_scope" } }));
      t.fake.script("chat.update", ...Array(4).fill({ body: { ok: false, error: "message_not_found" } }));
      for (let i = 0; i < 4; i++) {
        expect((await rejected(t.api.postMessage(POST))).code).toBe(Code.PermissionDenied);
        expect((await rejected(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }))).code).toBe(
          Code.NotFound,
        );
      }
      await expect(t.api.postMessage(POST)).resolves.toMatchObject({ channel: CHANNEL });
    });
  });

  describe("idempotency", () => {
    it("posts once per key: the second call replays the first message", async () => {
      await setUp();
      const first = await t.api.postMessage({ ...POST, idempotencyKey: "task-1:ack" });
      const second = await t.api.postMessage({ ...POST, idempotencyKey: "task-1:ack" });
      expect(t.fake.calls("chat.postMessage")).toHaveLength(1);
      expect(first.call?.replayed).toBe(false);
      expect(second).toMatchObject({
        channel: first.channel,
        ts: first.ts,
        call: { replayed: true, dryRun: false, request: first.call!.request },
      });
      expect(await t.db.redis.exists(`${t.db.prefix}idempotency:postMessage:task-1:ack`)).toBe(1);
    });

    it("posts once for concurrent calls with one key", async () => {
      await setUp();
      const results = await Promise.all(
        [1, 2, 3].map(() => t.api.postMessage({ ...POST, idempotencyKey: "task-2:ack" })),
      );
      expect(t.fake.calls("chat.postMessage")).toHaveLength(1);
      expect(new Set(results.map((r) => r.ts)).size).toBe(1);
      expect(results.filter((r) => r.call?.replayed)).toHaveLength(2);
    });

    it("posts again after a failed first call, and for other keys or no key", async () => {
      await setUp();
      t.fake.script("chat.postMessage", { status: 500 });
      await rejected(t.api.postMessage({ ...POST, idempotencyKey: "task-3:ack" }));
      const retried = await t.api.postMessage({ ...POST, idempotencyKey: "task-3:ack" });
      expect(retried.call?.replayed).toBe(false);
      await t.api.postMessage({ ...POST, idempotencyKey: "task-3:final" });
      await t.api.postMessage(POST);
      await t.api.postMessage(POST);
      expect(t.fake.calls("chat.postMessage")).toHaveLength(5);
      expect(t.fake.messages).toHaveLength(4);
    });

    it("refuses a keyed post with Unavailable while the store is down, posting nothing", async () => {
      await setUp();
      t.redis.disconnect();
      await expect(t.api.postMessage({ ...POST, idempotencyKey: "task-4:ack" })).rejects.toThrow(
        IdempotencyUnavailableError,
      );
      expect(t.fake.received).toEqual([]);
    });

    it("answers the posted message when the store fails to record it, so the caller does not post again", async () => {
      await setUp();
      // The key is claimed; the store goes away while Slack posts.
      t.fake.script("chat.postMessage", () => {
        t.redis.disconnect();
        return undefined;
      });
      const res = await t.api.postMessage({ ...POST, idempotencyKey: "task-4:final" });
      expect(res).toMatchObject({ channel: CHANNEL, ts: t.fake.messages[0]!.ts, call: { replayed: false } });
      expect(t.fake.calls("chat.postMessage")).toHaveLength(1);
      expect(
        t
          .lines()
          .some((l) => l.includes("idempotency key could not be recorded") && l.includes("Connection is closed")),
      ).toBe(true);
    });
  });

  describe("credentials", () => {
    it("runs dry without a token when dry run is on: nothing sent, the request described, logged as a dry run", async () => {
      await setUp({ token: false, env: { HOOKMESH_DRY_RUN: "1" } });
      const post = await t.api.postMessage({ ...POST, threadTs: "1700000000.000100", idempotencyKey: "task-5:ack" });
      const again = await t.api.postMessage({ ...POST, threadTs: "1700000000.000100", idempotencyKey: "task-5:ack" });
      const update = await t.api.updateMessage({ channel: CHANNEL, ts: post.ts, text: "done" });
      const reaction = await t.api.addReaction({ channel: CHANNEL, timestamp: "1700000000.000100", name: "eyes" });
      expect(t.fake.received).toEqual([]);
      // A message ts in shape, the same for the same key; the edit takes it as any other ts.
      expect(post.ts).toMatch(/^\d{10}\.\d{6}$/);
      expect(again.ts).toBe(post.ts);
      expect(post).toMatchObject({
        channel: CHANNEL,
        call: {
          dryRun: true,
          replayed: false,
          request: {
            method: "POST",
            url: `${t.fake.url}/chat.postMessage`,
            body: JSON.stringify({ channel: CHANNEL, text: "on it", thread_ts: "1700000000.000100" }),
          },
        },
      });
      expect(update).toMatchObject({
        channel: CHANNEL,
        ts: post.ts,
        call: {
          dryRun: true,
          request: {
            method: "POST",
            url: `${t.fake.url}/chat.update`,
            body: JSON.stringify({ channel: CHANNEL, ts: post.ts, text: "done" }),
          },
        },
      });
      expect(reaction.call).toMatchObject({
        dryRun: true,
        request: {
          method: "POST",
          url: `${t.fake.url}/reactions.add`,
          body: JSON.stringify({ channel: CHANNEL, timestamp: "1700000000.000100", name: "eyes" }),
        },
      });
      const dryRuns = t
        .lines()
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => String(l.msg).startsWith("dry run"));
      expect(dryRuns).toHaveLength(4);
      expect(dryRuns[0]).toMatchObject({
        level: 30,
        msg: "dry run: request not sent to Slack",
        upstream: "slack",
        method: "POST",
        url: `${t.fake.url}/chat.postMessage`,
        missing: "SLACK_BOT_TOKEN",
      });
      // Nothing is remembered for the key: the first real post, once a token is set, is not a replay.
      expect(await t.db.redis.keys(`${t.db.prefix}*`)).toEqual([]);
    });

    it("fails with MissingCredentialError naming SLACK_BOT_TOKEN without a token and without dry run", async () => {
      await setUp({ token: false });
      await expect(t.api.postMessage({ ...POST, idempotencyKey: "task-6:ack" })).rejects.toThrow(
        new MissingCredentialError("SLACK_BOT_TOKEN"),
      );
      await expect(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" })).rejects.toThrow(
        MissingCredentialError,
      );
      await expect(t.api.addReaction({ channel: CHANNEL, timestamp: "1.2", name: "eyes" })).rejects.toThrow(
        MissingCredentialError,
      );
      expect(t.fake.received).toEqual([]);
    });

    it("uses a token from SLACK_BOT_TOKEN_FILE and the new one once the file changes", async () => {
      const dir = await mkdtemp(join(tmpdir(), "hookmesh-slack-"));
      const file = join(dir, "token");
      await writeFile(file, `${TEST_TOKEN}\n`);
      await setUp({ token: false, env: { SLACK_BOT_TOKEN_FILE: file } });
      try {
        await t.api.postMessage(POST);
        expect(t.fake.received[0]!.headers.authorization).toBe(`Bearer ${TEST_TOKEN}`);

        t.fake.token = "xoxb-rotated-token-2";
        await writeFile(file, "xoxb-rotated-token-2\n");
        await expect.poll(() => t.token.get(), { timeout: 5_000, interval: 100 }).toBe("xoxb-rotated-token-2");
        await t.api.postMessage(POST);
        expect(t.fake.received[1]!.headers.authorization).toBe("Bearer xoxb-rotated-token-2");

        t.fake.token = "xoxb-rotated-token-3";
        await writeFile(file, "xoxb-rotated-token-3\n");
        process.emit("SIGHUP", "SIGHUP");
        expect(t.token.get()).toBe("xoxb-rotated-token-3");
        await t.api.postMessage(POST);
        expect(t.fake.received[2]!.headers.authorization).toBe("Bearer xoxb-rotated-token-3");
        const logged = t.lines().join("\n");
        expect(logged).toContain("credential reloaded");
        expect(logged).not.toMatch(/xoxb-rotated/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("never puts the token in errors or logs", async () => {
      await setUp();
      t.fake.script(
        "chat.postMessage",
        { status: 401, body: { ok: false, error: "invalid_auth" } },
        { status: 500 },
        "hang",
      );
      t.fake.script("chat.update", { body: { ok: false, error: "token_revoked" } });
      const errors = [
        await rejected(t.api.postMessage(POST)),
        await rejected(t.api.postMessage(POST)),
        await rejected(t.api.postMessage(POST)),
        await rejected(t.api.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" })),
      ];
      for (const err of errors) expect(`${err.message} ${err.stack}`).not.toContain(TEST_TOKEN);
    });
  });
});
