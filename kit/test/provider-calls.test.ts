import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type PostMessageResponse, PostMessageResponseSchema } from "../../gen/hookmesh/slack/v1/slack_pb.js";
import { IdempotencyUnavailableError, InvalidRequestError } from "../src/errors.js";
import { failure, memoryLogger, type TestRedis, testRedis } from "../src/testing/index.js";
import {
  type Caller,
  type Created,
  type DescribedRequest,
  IDEMPOTENCY_TTL_MS,
  MissingCredentialError,
  ProviderCalls,
  UpstreamClient,
  UpstreamError,
} from "../src/upstream/index.js";

const REQUEST: DescribedRequest = { method: "POST", path: "/messages", body: { text: "on it" } };

/** Redis commands a test makes fail, by name, while the rest go to the real connection. */
type Failing = Partial<Record<"set" | "getBuffer" | "del", (args: unknown[]) => boolean>>;

function flaky(redis: Redis, failing: Failing): Redis {
  return new Proxy(redis, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      const fails = failing[prop as keyof Failing];
      return (...args: unknown[]) =>
        fails?.(args)
          ? Promise.reject(new Error(`${String(prop)}: connection lost`))
          : (value as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
}

describe("ProviderCalls", () => {
  let db: TestRedis;
  let upstream: UpstreamClient;
  let log: ReturnType<typeof memoryLogger>;
  let token: string | undefined;
  let sent: Caller[];

  /** Calls to "Acme" over the test's Redis; live while `token` is set. */
  async function calls(options: { dryRun?: boolean; failing?: Failing } = {}): Promise<ProviderCalls> {
    db = await testRedis("provider-calls");
    log = memoryLogger("provider-calls-test");
    // The longest call: 2 attempts of 100 ms and one wait of at most 50 ms.
    upstream = new UpstreamClient({
      name: "acme",
      title: "Acme",
      baseUrl: "https://api.acme.test",
      logger: log.logger,
      attemptTimeoutMs: 100,
      maxAttempts: 2,
      maxRateLimitWaitMs: 50,
    });
    return new ProviderCalls({
      upstream,
      redis: flaky(db.redis, options.failing ?? {}),
      keyPrefix: db.prefix,
      logger: log.logger,
      dryRun: options.dryRun ?? false,
      missing: () => (token === undefined ? new MissingCredentialError("ACME_TOKEN") : undefined),
    });
  }

  /** A message post under `key`; `answer` is what the provider gives. */
  function post(
    p: ProviderCalls,
    key: string,
    caller: Caller = {},
    answer: () => Promise<string> = async () => `ts-${sent.length}`,
  ) {
    return p.create(
      REQUEST,
      caller,
      async (caller) => {
        sent.push(caller);
        return answer();
      },
      {
        rpc: "postMessage",
        idempotencyKey: key,
        schema: PostMessageResponseSchema,
        respond: (created: Created<string>): PostMessageResponse =>
          create(PostMessageResponseSchema, {
            ts: created.dryRun ? String(created.id) : created.answer,
            call: created.call,
          }),
      },
    );
  }

  beforeEach(() => {
    token = "t";
    sent = [];
  });

  afterEach(async () => {
    upstream.shutdown();
    await db.cleanup();
  });

  it("sends a live call and describes it, credentials left out", async () => {
    const p = await calls();
    const res = await p.send(REQUEST, {}, async () => "answer");
    expect(res).toEqual({
      dryRun: false,
      answer: "answer",
      call: expect.objectContaining({ dryRun: false, replayed: false }),
    });
    expect(res.call.request).toMatchObject({
      method: "POST",
      url: "https://api.acme.test/messages",
      body: '{"text":"on it"}',
    });
  });

  it("without credentials fails naming the variable, sending nothing; with dry run, describes the call and logs it once", async () => {
    token = undefined;
    const live = await calls();
    expect(
      await failure(
        live.send(REQUEST, {}, async () => "x"),
        MissingCredentialError,
      ),
    ).toMatchObject({ variable: "ACME_TOKEN" });
    upstream.shutdown();
    await db.cleanup();

    const dry = await calls({ dryRun: true });
    const res = await dry.send(REQUEST, {}, async () => "x");
    expect(res).toMatchObject({
      dryRun: true,
      call: { dryRun: true, request: { method: "POST", url: "https://api.acme.test/messages" } },
    });
    expect(sent).toEqual([]);
    expect(log.lines().map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      expect.objectContaining({
        level: 30,
        msg: "dry run: request not sent to Acme",
        upstream: "acme",
        method: "POST",
        url: "https://api.acme.test/messages",
        missing: "ACME_TOKEN",
      }),
    ]);
    expect(dry.dryRunText).toBe("dry run: nothing was sent to Acme");
  });

  it("gives a dry-run create a synthetic id, stable per key (or request), and remembers nothing", async () => {
    token = undefined;
    const p = await calls({ dryRun: true });
    const [a, again, b, unkeyed, unkeyedAgain] = await Promise.all([
      post(p, "k1"),
      post(p, "k1"),
      post(p, "k2"),
      post(p, ""),
      post(p, ""),
    ]);
    expect(a!.ts).toMatch(/^[1-9]\d*$/);
    expect(BigInt(a!.ts)).toBeLessThan(2n ** 53n);
    expect(again!.ts).toBe(a!.ts);
    expect(b!.ts).not.toBe(a!.ts);
    expect(unkeyedAgain!.ts).toBe(unkeyed!.ts);
    expect(a!.call).toMatchObject({ dryRun: true, replayed: false });
    expect(sent).toEqual([]);
    expect(await db.redis.keys(`${db.prefix}*`)).toEqual([]);
  });

  it("creates once per key: a repeat is the stored response, marked replayed; another key or none creates again", async () => {
    const p = await calls();
    const first = await post(p, "t-1:ack");
    const again = await post(p, " t-1:ack ");
    await post(p, "t-2:ack");
    await post(p, "");
    expect(sent).toHaveLength(3);
    expect(again).toMatchObject({
      ts: first.ts,
      call: { replayed: true, dryRun: false, request: first.call!.request },
    });
    expect(await db.redis.pttl(`${db.prefix}idempotency:postMessage:t-1:ack`)).toBeGreaterThan(
      IDEMPOTENCY_TTL_MS - 60_000,
    );
  });

  it("makes a call that comes while the first is in flight wait for its result", async () => {
    const p = await calls();
    let answer!: (ts: string) => void;
    const first = post(p, "k", {}, () => new Promise((resolve) => (answer = resolve)));
    await expect.poll(() => sent.length).toBe(1);
    const second = post(p, "k");
    answer("ts-first");
    expect((await first).ts).toBe("ts-first");
    expect(await second).toMatchObject({ ts: "ts-first", call: { replayed: true } });
    expect(sent).toHaveLength(1);
  });

  it("bounds a keyed call by its key's lock: the longest a call can take", async () => {
    const p = await calls();
    const before = Date.now();
    await post(p, "k", { deadline: Date.now() + 60_000 });
    expect(upstream.longestCallMs).toBe(250);
    expect(sent[0]!.deadline).toBeLessThanOrEqual(before + 250 + 5);
  });

  it("fails Unavailable, sending nothing, when the store fails before the provider is called", async () => {
    const p = await calls({ failing: { set: () => true } });
    const err = await failure(post(p, "k"), IdempotencyUnavailableError);
    expect(err.message).toBe("idempotency store unavailable; retry later");
    expect(sent).toEqual([]);
  });

  it("returns the provider's answer when the store fails after it: recording is retried, then logged", async () => {
    let records = 0;
    const recordFails = (args: unknown[]) => args[1] !== "pending" && ++records <= 1;
    const retried = await calls({ failing: { set: recordFails } });
    const first = await post(retried, "k");
    // The second attempt at recording succeeded: the key replays.
    expect(await post(retried, "k")).toMatchObject({ ts: first.ts, call: { replayed: true } });
    expect(sent).toHaveLength(1);
    upstream.shutdown();
    await db.cleanup();

    const down = await calls({ failing: { set: (args) => args[1] !== "pending" } });
    const res = await post(down, "k2");
    expect(res).toMatchObject({ ts: "ts-2", call: { replayed: false } });
    const logged = log.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toContainEqual(
      expect.objectContaining({
        level: 50,
        key: "postMessage:k2",
        msg: "Acme answered, but the idempotency key could not be recorded: a call with this key may act again once its lock expires",
      }),
    );
  });

  it("frees the key when the provider fails, so a retry sends; the provider's error is what the caller gets, even when freeing fails", async () => {
    let del = false;
    const p = await calls({ failing: { del: () => del } });
    const refused = new UpstreamError(Code.PermissionDenied, "acme answered 403", 403);
    expect(await failure(post(p, "k", {}, () => Promise.reject(refused)))).toBe(refused);
    expect((await post(p, "k")).call?.replayed).toBe(false);
    expect(sent).toHaveLength(2);

    del = true;
    expect(await failure(post(p, "k2", {}, () => Promise.reject(refused)))).toBe(refused);
    expect(log.lines().some((l) => l.includes("could not free the idempotency key"))).toBe(true);
  });

  it("ends a wait for another call with Canceled when the caller cancels, DeadlineExceeded at its deadline", async () => {
    const p = await calls();
    const first = post(p, "k", {}, () => new Promise(() => {}));
    await expect.poll(() => sent.length).toBe(1);
    const controller = new AbortController();
    const canceled = failure(post(p, "k", { signal: controller.signal }), UpstreamError);
    controller.abort();
    expect(await canceled).toMatchObject({ code: Code.Canceled, message: "acme: canceled" });
    expect(await failure(post(p, "k", { deadline: Date.now() + 100 }), UpstreamError)).toMatchObject({
      code: Code.DeadlineExceeded,
    });
    expect(sent).toHaveLength(1);
    // The first call still holds the key; it never answers.
    expect(await Promise.race([first.then(() => "answered"), Promise.resolve("pending")])).toBe("pending");
  });

  it("refuses an idempotency key longer than 512 characters", async () => {
    const p = await calls();
    expect(await failure(post(p, "k".repeat(513)), InvalidRequestError)).toMatchObject({ field: "idempotency_key" });
    expect(sent).toEqual([]);
  });

  it("says at start-up where calls go", async () => {
    const live = await calls();
    live.logStartup({ apiUrl: "https://api.acme.test" });
    token = undefined;
    live.logStartup();
    const said = log.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(said).toEqual([
      expect.objectContaining({ level: 30, msg: "calling Acme", apiUrl: "https://api.acme.test" }),
      expect.objectContaining({
        level: 40,
        msg: "ACME_TOKEN is not set: calls fail with FailedPrecondition until it is (or HOOKMESH_DRY_RUN=1)",
        missing: "ACME_TOKEN",
      }),
    ]);
    upstream.shutdown();
    await db.cleanup();

    const dry = await calls({ dryRun: true });
    dry.logStartup();
    expect(log.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
      "ACME_TOKEN is not set: dry run, calls are described and nothing is sent to Acme",
    ]);
  });
});
