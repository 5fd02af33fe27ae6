import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mapUpstreamError, ServingStatus, serverCallInterceptor } from "@hookmesh/kit";
import { callError } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { routes } from "../src/routes.js";
import { CHANNEL, TEST_TOKEN } from "./fake-slack.js";
import { type Harness, type HarnessOptions, serve, setup } from "./helpers.js";

const POST = { channel: CHANNEL, text: "on it" };

describe("SlackService over gRPC", () => {
  let t: Harness;
  let served: Awaited<ReturnType<typeof serve>>;
  const start = async (options: HarnessOptions = {}) => {
    t = await setup(options);
    served = await serve(t);
    return served.client;
  };

  afterEach(async () => {
    await t?.close();
    expect(t.lines().join("\n")).not.toContain(TEST_TOKEN);
  });

  it("posts in a thread, edits the message and reacts to the parent: the acknowledgment loop", async () => {
    const client = await start();
    const parent = t.fake.seed("@hookmesh why is CI red?");
    const ack = await client.postMessage({
      ...POST,
      threadTs: parent,
      text: "Working on it (task t-1)",
      idempotencyKey: "t-1:ack",
    });
    const again = await client.postMessage({
      ...POST,
      threadTs: parent,
      text: "Working on it (task t-1)",
      idempotencyKey: "t-1:ack",
    });
    await client.addReaction({ channel: CHANNEL, timestamp: parent, name: "eyes" });
    await client.addReaction({ channel: CHANNEL, timestamp: parent, name: "eyes" });
    const final = await client.updateMessage({ channel: ack.channel, ts: ack.ts, text: "Done in 42s, $0.12" });

    expect(t.fake.received.map((r) => [r.path, r.body])).toEqual([
      ["/chat.postMessage", { channel: CHANNEL, text: "Working on it (task t-1)", thread_ts: parent }],
      ["/reactions.add", { channel: CHANNEL, timestamp: parent, name: "eyes" }],
      ["/reactions.add", { channel: CHANNEL, timestamp: parent, name: "eyes" }],
      ["/chat.update", { channel: CHANNEL, ts: ack.ts, text: "Done in 42s, $0.12" }],
    ]);
    expect(again).toMatchObject({ ts: ack.ts, call: { replayed: true } });
    expect(final).toMatchObject({
      channel: CHANNEL,
      ts: ack.ts,
      call: { dryRun: false, request: { url: `${t.fake.url}/chat.update` } },
    });
    expect(t.fake.messages.map((m) => [m.text, m.threadTs, [...m.reactions]])).toEqual([
      ["@hookmesh why is CI red?", undefined, ["eyes"]],
      ["Done in 42s, $0.12", parent, []],
    ]);
  });

  it("answers Slack's errors with their codes, naming the Slack error", async () => {
    const client = await start();
    const notFound = await callError(client.postMessage({ ...POST, channel: "C0NOPE" }));
    expect([notFound.code, notFound.rawMessage]).toEqual([Code.NotFound, "slack chat.postMessage: channel_not_found"]);
    t.fake.script(
      "chat.postMessage",
      { body: { ok: false, error: "not_in_channel" } },
      { status: 429, headers: { "retry-after": "600" }, body: { ok: false, error: "ratelimited" } },
      { body: { ok: false, error: "msg_too_long" } },
      { body: { ok: false, error: "team_is_on_fire" } },
    );
    expect((await callError(client.postMessage(POST))).code).toBe(Code.PermissionDenied);
    expect((await callError(client.postMessage(POST))).code).toBe(Code.ResourceExhausted);
    expect((await callError(client.postMessage(POST))).code).toBe(Code.InvalidArgument);
    const unknown = await callError(client.postMessage(POST));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.Unknown, "slack chat.postMessage: team_is_on_fire"]);
    t.fake.token = "xoxb-other";
    const auth = await callError(client.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }));
    expect([auth.code, auth.rawMessage]).toEqual([Code.Unauthenticated, "slack chat.update: invalid_auth"]);
    expect(`${auth.message} ${JSON.stringify(auth.metadata)}`).not.toContain(TEST_TOKEN);
    const lines = t.lines().join("\n");
    expect(lines).toContain("slack chat.update: invalid_auth");
  });

  it("answers InvalidArgument for a request with missing fields", async () => {
    const client = await start();
    const err = await callError(client.updateMessage({ channel: CHANNEL, text: "x" }));
    expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, "ts is required"]);
    expect(t.fake.received).toEqual([]);
  });

  it("answers FailedPrecondition naming SLACK_BOT_TOKEN when there is no token and no dry run", async () => {
    const client = await start({ token: false });
    const err = await callError(client.postMessage(POST));
    expect([err.code, err.rawMessage]).toEqual([Code.FailedPrecondition, "SLACK_BOT_TOKEN is not set"]);
    expect(t.fake.received).toEqual([]);
  });

  it("answers a dry run without a token when dry run is on", async () => {
    const client = await start({ token: false, env: { HOOKMESH_DRY_RUN: "1" } });
    const res = await client.postMessage({ ...POST, idempotencyKey: "t-2:ack" });
    expect(res).toMatchObject({
      channel: CHANNEL,
      call: {
        dryRun: true,
        replayed: false,
        request: { method: "POST", url: `${t.fake.url}/chat.postMessage`, body: JSON.stringify(POST) },
      },
    });
    const final = await client.updateMessage({ channel: res.channel, ts: res.ts, text: "The answer" });
    expect(final).toMatchObject({
      ts: res.ts,
      call: {
        dryRun: true,
        request: {
          url: `${t.fake.url}/chat.update`,
          body: JSON.stringify({ channel: CHANNEL, ts: res.ts, text: "The answer" }),
        },
      },
    });
    expect(t.fake.received).toEqual([]);
    expect(t.lines().filter((l) => l.includes('"msg":"dry run: request not sent to Slack"'))).toHaveLength(2);
  });

  it("fails fast with Unavailable once repeated 5xx opened the breaker", async () => {
    const client = await start({ upstream: { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } } });
    t.fake.script("chat.update", ...Array(6).fill({ status: 503 }));
    expect((await callError(client.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }))).code).toBe(
      Code.Unavailable,
    );
    expect((await callError(client.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }))).code).toBe(
      Code.Unavailable,
    );
    t.fake.reset();
    const started = Date.now();
    const err = await callError(client.addReaction({ channel: CHANNEL, timestamp: "1.2", name: "eyes" }));
    expect([err.code, err.rawMessage]).toEqual([Code.Unavailable, "slack is failing; circuit open"]);
    expect(Date.now() - started).toBeLessThan(200);
    expect(t.fake.received).toEqual([]);
  });

  it("passes the caller's deadline down: a hanging Slack ends the call at the deadline", async () => {
    const client = await start({ env: { SLACK_TIMEOUT_MS: "10000" } });
    t.fake.script("chat.update", "hang");
    const started = Date.now();
    const err = await callError(client.updateMessage({ channel: CHANNEL, ts: "1.2", text: "x" }, { timeoutMs: 300 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("serves health and reports SERVING", async () => {
    await start();
    const health = createClient(Health, createGrpcTransport({ baseUrl: served.baseUrl }));
    expect((await health.check({ service: SlackService.typeName })).status).toBe(ServingStatus.SERVING);
  });
});

describe("SlackService routes (in-memory transport)", () => {
  let t: Harness;
  afterEach(async () => t?.close());

  it("translates requests and maps errors the way the server does", async () => {
    t = await setup();
    const transport = createRouterTransport(routes(t.api), {
      router: { interceptors: [serverCallInterceptor(t.logger, mapUpstreamError)] },
    });
    const client = createClient(SlackService, transport);
    const ts = t.fake.seed("hello");
    await expect(client.addReaction({ channel: CHANNEL, timestamp: ts, name: "+1" })).resolves.toMatchObject({
      call: { dryRun: false },
    });
    expect(t.fake.calls("reactions.add")[0]!.body).toEqual({ channel: CHANNEL, timestamp: ts, name: "+1" });
    expect((await callError(client.addReaction({ channel: CHANNEL, timestamp: "9.9", name: "+1" }))).code).toBe(
      Code.NotFound,
    );
    expect((await callError(client.postMessage({ channel: CHANNEL }))).code).toBe(Code.InvalidArgument);
  });
});
