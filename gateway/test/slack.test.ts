import { createHash } from "node:crypto";
import { signSlack } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../src/http-errors.js";
import { SLACK_MAX_BODY_BYTES, SlackProvider } from "../src/slack/provider.js";
import { fixture } from "../src/testing.js";
import type { IncomingWebhook } from "../src/webhook-provider.js";
import { eventOf, incoming, rejectionOf } from "./provider-helpers.js";

const SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const OLD_SECRET = "0ld-slack-signing-secret-1f2e3d";
const JSON_TYPE = "application/json";
const FORM_TYPE = "application/x-www-form-urlencoded";
/** On a whole second, so that skews are exact. */
const RECEIVED = new Date("2024-05-01T12:00:00Z");
const NOW_SECONDS = RECEIVED.getTime() / 1000;
const NON_ASCII = "Grüße 👋 日本語";

const slack = new SlackProvider();

/** A request signed the way Slack signs it, `skewSeconds` away from the receive time. */
function signed(
  body: Buffer | string,
  contentType = JSON_TYPE,
  {
    secret = SECRET,
    skewSeconds = 0,
    headers = {},
  }: { secret?: string; skewSeconds?: number; headers?: Record<string, string> } = {},
): IncomingWebhook {
  const timestamp = NOW_SECONDS + skewSeconds;
  return incoming(
    body,
    {
      "content-type": contentType,
      "x-slack-request-timestamp": String(timestamp),
      "x-slack-signature": signSlack(body, secret, timestamp),
      ...headers,
    },
    contentType,
    RECEIVED,
  );
}

/** The Event the pipeline would build from a verdict: the verdict must be an event. */

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

function slashCommandFields(): Record<string, string> {
  return JSON.parse(fixture("slack-slash-command.json").toString("utf8")) as Record<string, string>;
}

function sha256Id(body: Buffer | string): string {
  return `sha256:${createHash("sha256").update(body).digest("hex")}`;
}

describe("SlackProvider settings", () => {
  it("takes JSON and form bodies, answers within Slack's 3 s, and caps bodies at 1 MiB", () => {
    expect(slack.name).toBe("slack");
    expect(slack.provider).toBe(Provider.SLACK);
    expect(slack.contentTypes).toEqual([JSON_TYPE, FORM_TYPE]);
    expect(slack.submitTimeoutMs).toBeLessThan(3_000);
    expect(slack.maxBodyBytes).toBe(SLACK_MAX_BODY_BYTES);
    expect(new SlackProvider(4096).maxBodyBytes).toBe(4096);
  });
});

describe("SlackProvider.verify", () => {
  const body = fixture("slack-app-mention.json");

  it("accepts Slack's v0 signature over the raw bytes, non-ASCII included", () => {
    expect(() => slack.verify(signed(body), [SECRET])).not.toThrow();
  });

  it("accepts a signature by any configured secret, so secrets can be rotated", () => {
    expect(() => slack.verify(signed(body, JSON_TYPE, { secret: SECRET }), [OLD_SECRET, SECRET])).not.toThrow();
    expect(() => slack.verify(signed(body, JSON_TYPE, { secret: OLD_SECRET }), [OLD_SECRET, SECRET])).not.toThrow();
  });

  it("accepts timestamps up to exactly five minutes off either way", () => {
    expect(() => slack.verify(signed(body, JSON_TYPE, { skewSeconds: -300 }), [SECRET])).not.toThrow();
    expect(() => slack.verify(signed(body, JSON_TYPE, { skewSeconds: 300 }), [SECRET])).not.toThrow();
  });

  const mismatch = "X-Slack-Signature does not match any configured signing secret";
  const refusals: Array<[string, () => IncomingWebhook, string, string]> = [
    [
      "forged with another secret",
      () => signed(body, JSON_TYPE, { secret: "not-the-secret" }),
      "signature mismatch",
      mismatch,
    ],
    [
      "signed by a secret no longer configured",
      () => signed(body, JSON_TYPE, { secret: OLD_SECRET }),
      "signature mismatch",
      mismatch,
    ],
    [
      "tampered (one byte changed)",
      () => ({ ...signed(body), rawBody: flipByte(body, 200) }),
      "signature mismatch",
      mismatch,
    ],
    [
      "re-dated: a fresh timestamp on an old signature",
      () => signed(body, JSON_TYPE, { headers: { "x-slack-request-timestamp": String(NOW_SECONDS + 1) } }),
      "signature mismatch",
      mismatch,
    ],
    [
      "missing X-Slack-Signature",
      () => withoutHeader(signed(body), "x-slack-signature"),
      "signature required",
      "missing X-Slack-Signature",
    ],
    [
      "missing X-Slack-Request-Timestamp",
      () => withoutHeader(signed(body), "x-slack-request-timestamp"),
      "signature required",
      "missing X-Slack-Request-Timestamp",
    ],
    [
      "a timestamp that is not a number",
      () => signed(body, JSON_TYPE, { headers: { "x-slack-request-timestamp": "1714564800.5" } }),
      "invalid timestamp",
      "X-Slack-Request-Timestamp is not a number of seconds",
    ],
    [
      "stale: five minutes and one second old",
      () => signed(body, JSON_TYPE, { skewSeconds: -301 }),
      "stale timestamp",
      "X-Slack-Request-Timestamp is 301 s from the receive time (limit 300 s)",
    ],
    [
      "from the future: five minutes and one second ahead",
      () => signed(body, JSON_TYPE, { skewSeconds: 301 }),
      "stale timestamp",
      "X-Slack-Request-Timestamp is 301 s from the receive time (limit 300 s)",
    ],
    [
      "another signature version",
      () =>
        signed(body, JSON_TYPE, {
          headers: { "x-slack-signature": signSlack(body, SECRET, NOW_SECONDS).replace("v0=", "v1=") },
        }),
      "signature mismatch",
      "X-Slack-Signature is not a v0= signature",
    ],
    [
      "a signature that is not hex",
      () => signed(body, JSON_TYPE, { headers: { "x-slack-signature": `v0=${"zz".repeat(32)}` } }),
      "signature mismatch",
      mismatch,
    ],
  ];

  it.each(refusals)("refuses a request %s with 401 and says which check failed", (_name, request, message, detail) => {
    const rejection = rejectionOf(() => slack.verify(request(), [SECRET]));
    expect(rejection.status).toBe(401);
    expect(rejection.message).toBe(message);
    expect(rejection.detail).toBe(detail);
    // Neither the secret nor the signature it would have made may reach a log line.
    const expected = signSlack(body, SECRET, NOW_SECONDS).slice(3);
    for (const text of [rejection.message, rejection.detail ?? ""]) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(expected);
    }
  });

  it("requires a signature on Slack's certificate check like on every request", () => {
    const unsigned = incoming(form({ ssl_check: "1", token: "gIkuvaNzQIHg97ATvDxqgjtO" }), {}, FORM_TYPE, RECEIVED);
    expect(rejectionOf(() => slack.verify(unsigned, [SECRET])).detail).toBe("missing X-Slack-Signature");
    // Signed, it is answered, never submitted, even with a slash command's fields beside it.
    const disguised = incoming(form({ ...slashCommandFields(), ssl_check: "1" }), {}, FORM_TYPE, RECEIVED);
    expect(slack.parse(disguised)).toEqual({ kind: "reply", status: 200, body: {}, log: "ssl_check" });
  });

  it("does not take ssl_check in a JSON body as the certificate check", () => {
    const json = incoming(JSON.stringify({ ssl_check: "1" }), {}, JSON_TYPE, RECEIVED);
    expect(rejectionOf(() => slack.verify(json, [SECRET])).detail).toBe("missing X-Slack-Signature");
  });
});

describe("SlackProvider.parse: Events API", () => {
  it("answers url_verification with its challenge", () => {
    const body = JSON.stringify({
      token: "Jhj5dZrVaK7ZwHHjRyZWjbDl",
      challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
      type: "url_verification",
    });
    const request = signed(body);
    slack.verify(request, [SECRET]);
    expect(slack.parse(request)).toEqual({
      kind: "reply",
      status: 200,
      body: { challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" },
      log: "url_verification",
    });
  });

  it("refuses url_verification without a challenge", () => {
    expect(rejectionOf(() => slack.parse(signed(JSON.stringify({ type: "url_verification" })))).status).toBe(400);
  });

  it("answers Slack's app_rate_limited notice without creating work", () => {
    const body = JSON.stringify({
      token: "x",
      type: "app_rate_limited",
      team_id: "T123456",
      minute_rate_limited: 1518467820,
      api_app_id: "A123456",
    });
    expect(slack.parse(signed(body))).toEqual({
      kind: "reply",
      status: 200,
      body: { ok: true },
      log: "app_rate_limited: team T123456, minute 1518467820",
    });
  });

  it("normalizes an app_mention", () => {
    const event = eventOf(slack.parse(signed(fixture("slack-app-mention.json"))), slack);
    expect(event.deliveryId).toBe("Ev0LAN670R");
    expect(event.sourceId).toBe("A0MDYCDME");
    expect(event.eventType).toBe("app_mention");
    expect(event.action).toBe("");
    expect(event.text).toBe(`<@U0LAN0Z89> is the deploy done? ${NON_ASCII}`);
    expect(event.actor).toMatchObject({ id: "U061F7AUR", login: "", bot: false });
    expect(event.subject?.ref).toEqual({
      case: "slack",
      value: expect.objectContaining({
        teamId: "T061EG9R6",
        channelId: "C0LAN2Q65",
        threadTs: "1515449522.000016",
        messageTs: "1515449522.000016",
      }),
    });
    // A top-level message roots its own thread, which is where the answer goes.
    expect(event.subject?.key).toBe("slack:T061EG9R6/C0LAN2Q65/1515449522.000016");
    expect(event.subject?.url).toBe("");
    expect(event.subject?.title).toBe("");
  });

  it("normalizes a message in a thread to the thread's root", () => {
    const event = eventOf(slack.parse(signed(fixture("slack-message-thread.json"))), slack);
    expect(event.deliveryId).toBe("Ev08MFMKH6");
    expect(event.eventType).toBe("message");
    expect(event.action).toBe("");
    expect(event.text).toBe(`@hookmesh can you take this one? ${NON_ASCII}`);
    expect(event.actor).toMatchObject({ id: "U2147483697", bot: false });
    expect(event.subject?.ref.value).toMatchObject({
      teamId: "T061EG9R6",
      channelId: "C2147483705",
      threadTs: "1355517523.000005",
      messageTs: "1355517536.000001",
    });
    expect(event.subject?.key).toBe("slack:T061EG9R6/C2147483705/1355517523.000005");
  });

  it("marks a bot's message as a bot's, with the bot's name, and its subtype as the action", () => {
    const envelope = JSON.parse(fixture("slack-message-thread.json").toString("utf8")) as {
      event: Record<string, unknown>;
    };
    delete envelope.event.user;
    Object.assign(envelope.event, {
      subtype: "bot_message",
      bot_id: "B0LAN0Z89",
      username: "hookmesh",
      text: "Working on it",
    });
    const event = eventOf(slack.parse(signed(JSON.stringify(envelope))), slack);
    expect(event.action).toBe("bot_message");
    expect(event.actor).toMatchObject({ id: "", login: "hookmesh", bot: true });
  });

  it.each([
    ["an app's bot user, by its bot_id", { bot_id: "B0APPBOT1", user: "U0APPBOT1" }],
    ["a message with only a bot_profile", { bot_profile: { id: "B0APPBOT1", name: "deploy-bot" } }],
    ["an app_mention by a bot", { bot_id: "B0APPBOT1", bot_profile: { name: "deploy-bot" } }],
  ])("marks %s as a bot's", (_, fields) => {
    const envelope = JSON.parse(fixture("slack-app-mention.json").toString("utf8")) as {
      event: Record<string, unknown>;
    };
    Object.assign(envelope.event, fields);
    expect(eventOf(slack.parse(signed(JSON.stringify(envelope))), slack).actor?.bot).toBe(true);
  });

  it("names the author's own workspace: a Slack Connect guest's user_team, else the event's team", () => {
    const envelope = JSON.parse(fixture("slack-app-mention.json").toString("utf8")) as {
      event: Record<string, unknown>;
    };
    expect(eventOf(slack.parse(signed(JSON.stringify(envelope))), slack).actor?.teamId).toBe("T061EG9R6");
    Object.assign(envelope.event, { user_team: "T0PARTNER" });
    const event = eventOf(slack.parse(signed(JSON.stringify(envelope))), slack);
    expect(event.actor?.teamId).toBe("T0PARTNER");
    expect(event.subject?.ref.value).toMatchObject({ teamId: "T061EG9R6" });
  });

  it("carries no text for an edit, so that editing a message does not trigger again", () => {
    const envelope = JSON.parse(fixture("slack-message-thread.json").toString("utf8")) as {
      event: Record<string, unknown>;
    };
    const original = envelope.event;
    envelope.event = {
      type: "message",
      subtype: "message_changed",
      channel: original.channel,
      ts: "1355517540.000002",
      message: { ...original, text: "@hookmesh edited" },
    };
    const event = eventOf(slack.parse(signed(JSON.stringify(envelope))), slack);
    expect(event.action).toBe("message_changed");
    expect(event.text).toBe("");
  });

  it("identifies a retried event by its event_id, whatever the retry's timestamp and signature", () => {
    const body = fixture("slack-app-mention.json");
    const first = signed(body);
    const retry = signed(body, JSON_TYPE, {
      skewSeconds: 60,
      headers: { "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout" },
    });
    slack.verify(retry, [SECRET]);
    expect(eventOf(slack.parse(retry), slack).deliveryId).toBe(eventOf(slack.parse(first), slack).deliveryId);
    expect(eventOf(slack.parse(retry), slack).sourceId).toBe(eventOf(slack.parse(first), slack).sourceId);
  });

  it("refuses an event_callback without an event_id or an event type", () => {
    const envelope = JSON.parse(fixture("slack-app-mention.json").toString("utf8")) as Record<string, unknown>;
    const noId = rejectionOf(() => slack.parse(signed(JSON.stringify({ ...envelope, event_id: undefined }))));
    expect([noId.status, noId.message]).toEqual([400, "event_callback has no event_id"]);
    const noType = rejectionOf(() => slack.parse(signed(JSON.stringify({ ...envelope, event: "app_mention" }))));
    expect([noType.status, noType.message]).toEqual([400, "event_callback has no event.type"]);
  });

  it.each([
    ["an unknown type", JSON.stringify({ type: "block_suggestion_v9" }), "unsupported Slack payload type"],
    ["no type", JSON.stringify({ event: { type: "app_mention" } }), "unsupported Slack payload type"],
    ["invalid JSON", '{"type": "event_callback",', "body is not valid JSON"],
    ["an array", '[{"type": "event_callback"}]', "body must be a JSON object"],
    ["null", "null", "body must be a JSON object"],
    ["an empty body", "", "body is not valid JSON"],
  ])("refuses a JSON body with %s with 400", (_name, body, message) => {
    const rejection = rejectionOf(() => slack.parse(signed(body)));
    expect(rejection.status).toBe(400);
    expect(rejection.message).toBe(message);
  });
});

describe("SlackProvider.parse: slash commands", () => {
  const body = form(slashCommandFields());

  it("verifies the signature over the form bytes as sent", () => {
    expect(() => slack.verify(signed(body, FORM_TYPE), [SECRET])).not.toThrow();
    expect(
      rejectionOf(() =>
        slack.verify({ ...signed(body, FORM_TYPE), rawBody: Buffer.from(body.replace("Steve", "Steff")) }, [SECRET]),
      ).status,
    ).toBe(401);
  });

  it("normalizes a slash command, its non-ASCII text decoded", () => {
    const event = eventOf(slack.parse(signed(body, FORM_TYPE)), slack);
    expect(event.eventType).toBe("slash_command");
    expect(event.action).toBe("/hookmesh");
    expect(event.text).toBe(`fix the flaky login test — ${NON_ASCII}`);
    expect(event.sourceId).toBe("A123456");
    expect(event.actor).toMatchObject({ id: "U2147483697", login: "Steve", bot: false });
    expect(event.subject?.ref).toEqual({
      case: "slack",
      value: expect.objectContaining({ teamId: "T0001", channelId: "C2147483705", threadTs: "", messageTs: "" }),
    });
    expect(event.subject?.key).toBe("slack:T0001/C2147483705");
  });

  it("is identified by the digest of its signed body: a replay is a duplicate, another invocation is not", () => {
    const event = eventOf(slack.parse(signed(body, FORM_TYPE)), slack);
    expect(event.deliveryId).toBe(sha256Id(body));
    expect(eventOf(slack.parse(signed(body, FORM_TYPE, { skewSeconds: 5 })), slack).deliveryId).toBe(event.deliveryId);
    const again = form({ ...slashCommandFields(), trigger_id: "13345224609.738474920.ffff" });
    expect(eventOf(slack.parse(signed(again, FORM_TYPE)), slack).deliveryId).not.toBe(event.deliveryId);
  });

  it("answers Slack's certificate check", () => {
    expect(slack.parse(incoming(form({ ssl_check: "1", token: "x" }), {}, FORM_TYPE, RECEIVED))).toEqual({
      kind: "reply",
      status: 200,
      body: {},
      log: "ssl_check",
    });
  });

  it.each([
    ["neither a command nor a payload", form({ team_id: "T0001", text: "hello" })],
    ["an empty command", form({ ...slashCommandFields(), command: "" })],
    ["an empty body", ""],
    ["ssl_check other than 1", form({ ssl_check: "0" })],
  ])("refuses a form with %s with 400", (_name, formBody) => {
    const rejection = rejectionOf(() => slack.parse(signed(formBody, FORM_TYPE)));
    expect([rejection.status, rejection.message]).toEqual([400, "unsupported Slack payload type"]);
  });
});

describe("SlackProvider.parse: interactivity", () => {
  const payload = fixture("slack-block-actions.json").toString("utf8");
  const body = form({ payload });

  it("normalizes a block_actions payload", () => {
    const request = signed(body, FORM_TYPE);
    slack.verify(request, [SECRET]);
    const event = eventOf(slack.parse(request), slack);
    expect(event.deliveryId).toBe(sha256Id(body));
    expect(event.sourceId).toBe("A0MDYCDME");
    expect(event.eventType).toBe("block_actions");
    expect(event.action).toBe("hookmesh_cancel");
    // A click has no text of its own, only the message it was on.
    expect(event.text).toBe("");
    expect(event.actor).toMatchObject({ id: "U061F7AUR", login: "kim", bot: false });
    expect(event.subject?.ref.value).toMatchObject({
      teamId: "T061EG9R6",
      channelId: "C0LAN2Q65",
      threadTs: "1548261200.000100",
      messageTs: "1548261231.000200",
    });
    expect(event.subject?.key).toBe("slack:T061EG9R6/C0LAN2Q65/1548261200.000100");
  });

  it("takes a message shortcut's message text, non-ASCII intact, and its callback_id as the action", () => {
    const shortcut = {
      type: "message_action",
      callback_id: "hookmesh_investigate",
      trigger_id: "13345224609.8534564800.6f8ab1f53e13d0cd15f96106292d5536",
      response_url: "https://hooks.slack.com/app-actions/T0MJR11A4/21974584944/yk1S9ndf35Q1flupVG5JbpM6",
      team: { id: "T061EG9R6", domain: "kims-workspace" },
      channel: { id: "C0LAN2Q65", name: "general" },
      user: { id: "U061F7AUR", name: "kim" },
      message: { type: "message", user: "U2147483697", ts: "1548261231.000200", text: `it broke again ${NON_ASCII}` },
    };
    const event = eventOf(slack.parse(signed(form({ payload: JSON.stringify(shortcut) }), FORM_TYPE)), slack);
    expect(event.eventType).toBe("message_action");
    expect(event.action).toBe("hookmesh_investigate");
    expect(event.text).toBe(`it broke again ${NON_ASCII}`);
    expect(event.subject?.key).toBe("slack:T061EG9R6/C0LAN2Q65/1548261231.000200");
  });

  it("names a modal submission by its view's callback_id; it belongs to no channel", () => {
    const submission = {
      type: "view_submission",
      team: { id: "T061EG9R6", domain: "kims-workspace" },
      user: { id: "U061F7AUR", username: "kim", team_id: "T061EG9R6" },
      api_app_id: "A0MDYCDME",
      trigger_id: "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
      view: { id: "VNHU13V36", type: "modal", callback_id: "hookmesh_new_task", state: { values: {} } },
    };
    const event = eventOf(slack.parse(signed(form({ payload: JSON.stringify(submission) }), FORM_TYPE)), slack);
    expect(event.eventType).toBe("view_submission");
    expect(event.action).toBe("hookmesh_new_task");
    expect(event.subject?.ref.value).toMatchObject({ teamId: "T061EG9R6", channelId: "" });
    expect(event.subject?.key).toBe("");
  });

  it.each([
    ["invalid JSON", form({ payload: '{"type":' }), "body is not valid JSON"],
    ["a JSON string", form({ payload: '"block_actions"' }), "body must be a JSON object"],
    ["no type", form({ payload: JSON.stringify({ user: { id: "U1" } }) }), "interactivity payload has no type"],
  ])("refuses a payload with %s with 400", (_name, formBody, message) => {
    const rejection = rejectionOf(() => slack.parse(signed(formBody, FORM_TYPE)));
    expect([rejection.status, rejection.message]).toEqual([400, message]);
  });
});

describe("SlackProvider on malformed input", () => {
  it("throws nothing but 400 WebhookRejections for truncated and hostile bodies", () => {
    const samples = [
      fixture("slack-app-mention.json"),
      Buffer.from(form(slashCommandFields())),
      Buffer.from(form({ payload: fixture("slack-block-actions.json").toString("utf8") })),
    ];
    const bodies: Buffer[] = [];
    for (const sample of samples) {
      for (let end = 0; end < sample.length; end += 7) bodies.push(sample.subarray(0, end));
    }
    bodies.push(
      Buffer.from("[".repeat(100_000)),
      Buffer.from(`${'{"a":'.repeat(5_000)}1${"}".repeat(5_000)}`),
      Buffer.from(
        JSON.stringify({
          type: "event_callback",
          event_id: "Ev1",
          event: { type: "message", toString: 1, valueOf: 1 },
          toString: 1,
        }),
      ),
      Buffer.from(JSON.stringify({ type: "app_rate_limited", minute_rate_limited: { toString: 1 } })),
      Buffer.from('{"__proto__": {"type": "event_callback"}, "type": "url_verification", "challenge": {}}'),
      Buffer.from(
        form({
          payload: JSON.stringify({ type: "block_actions", actions: "none", user: [], channel: 5, message: null }),
        }),
      ),
      Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x22]),
      Buffer.from("payload=%E0%A4%A&command=%ZZ"),
    );
    for (const rawBody of bodies) {
      for (const contentType of [JSON_TYPE, FORM_TYPE]) {
        const request = incoming(rawBody, {}, contentType, RECEIVED);
        try {
          const verdict = slack.parse(request);
          expect(["event", "reply"]).toContain(verdict.kind);
        } catch (err) {
          expect(err).toBeInstanceOf(WebhookRejection);
          expect((err as WebhookRejection).status).toBe(400);
        }
        // Unsigned, so refused, unless it is the certificate check that is only ever answered.
        if (isSslCheck(rawBody, contentType)) expect(() => slack.verify(request, [SECRET])).not.toThrow();
        else expect(rejectionOf(() => slack.verify(request, [SECRET])).status).toBe(401);
      }
    }
  });
});

function isSslCheck(rawBody: Buffer, contentType: string): boolean {
  return contentType === FORM_TYPE && new URLSearchParams(rawBody.toString("utf8")).get("ssl_check") === "1";
}

function flipByte(body: Buffer, index: number): Buffer {
  const copy = Buffer.from(body);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

function withoutHeader(webhook: IncomingWebhook, name: string): IncomingWebhook {
  const headers = { ...webhook.headers };
  delete headers[name];
  return { ...webhook, headers };
}
