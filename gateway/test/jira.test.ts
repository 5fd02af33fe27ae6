import { createHash } from "node:crypto";
import { signJira } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../src/http-errors.js";
import { JIRA_MAX_BODY_BYTES, JiraProvider } from "../src/jira/provider.js";
import { fixture } from "../src/testing.js";
import type { IncomingWebhook } from "../src/webhook-provider.js";
import { eventOf, incoming, rejectionOf } from "./provider-helpers.js";

const SECRET = "jira-webhook-secret-5d0c1e";
const OLD_SECRET = "jira-old-secret-77a1";
const JSON_TYPE = "application/json";
const RECEIVED = new Date("2024-05-01T12:00:00Z");
const IDENTIFIER = "4d6a1f1e-6b1c-4c8e-9d2a-0f2b7c1a9e33";
const NON_ASCII = "Grüße 👋 日本語";

const jira = new JiraProvider();

/** A request signed the way Jira signs it, with Jira Cloud's delivery headers. */
function signed(
  body: Buffer | string,
  { secret = SECRET, headers = {} }: { secret?: string; headers?: Record<string, string | undefined> } = {},
): IncomingWebhook {
  const all: Record<string, string | undefined> = {
    "content-type": JSON_TYPE,
    "x-hub-signature": signJira(body, secret),
    "x-atlassian-webhook-identifier": IDENTIFIER,
    "x-atlassian-webhook-flow": "Primary",
    ...headers,
  };
  for (const name of Object.keys(all)) if (all[name] === undefined) delete all[name];
  return incoming(body, all, JSON_TYPE, RECEIVED);
}

type Json = Record<string, unknown>;

function fixtureJson(name: string): Json {
  return JSON.parse(fixture(name).toString("utf8")) as Json;
}

describe("JiraProvider settings", () => {
  it("takes JSON, waits at most 5 s for the tasks service, and caps bodies at 10 MiB", () => {
    expect(jira.name).toBe("jira");
    expect(jira.provider).toBe(Provider.JIRA);
    expect(jira.contentTypes).toEqual([JSON_TYPE]);
    expect(jira.submitTimeoutMs).toBe(5_000);
    expect(jira.maxBodyBytes).toBe(JIRA_MAX_BODY_BYTES);
    expect(new JiraProvider(1024).maxBodyBytes).toBe(1024);
  });
});

describe("JiraProvider.verify", () => {
  const body = fixture("jira-comment-created.json");

  it("accepts X-Hub-Signature sha256= over the raw bytes, non-ASCII included", () => {
    expect(() => jira.verify(signed(body), [SECRET])).not.toThrow();
  });

  it("accepts a signature by any configured secret, so secrets can be rotated", () => {
    expect(() => jira.verify(signed(body, { secret: OLD_SECRET }), [SECRET, OLD_SECRET])).not.toThrow();
    expect(() => jira.verify(signed(body, { secret: SECRET }), [OLD_SECRET, SECRET])).not.toThrow();
  });

  const mismatch = "X-Hub-Signature does not match any configured secret";
  const refusals: Array<[string, () => IncomingWebhook, string, string]> = [
    ["forged with another secret", () => signed(body, { secret: "guessed" }), "signature mismatch", mismatch],
    [
      "signed by a secret no longer configured",
      () => signed(body, { secret: OLD_SECRET }),
      "signature mismatch",
      mismatch,
    ],
    [
      "tampered (one byte changed)",
      () => ({ ...signed(body), rawBody: flipByte(body, 120) }),
      "signature mismatch",
      mismatch,
    ],
    [
      "missing X-Hub-Signature",
      () => signed(body, { headers: { "x-hub-signature": undefined } }),
      "signature required",
      "missing X-Hub-Signature",
    ],
    [
      "signed with sha1",
      () => signed(body, { headers: { "x-hub-signature": `sha1=${createHash("sha1").update(body).digest("hex")}` } }),
      "unsupported signature method",
      'X-Hub-Signature method "sha1" is not supported (only sha256)',
    ],
    [
      "with a bare digest, not method=signature",
      () => signed(body, { headers: { "x-hub-signature": signJira(body, SECRET).slice("sha256=".length) } }),
      "signature mismatch",
      "X-Hub-Signature is not method=signature",
    ],
    [
      "with an empty method",
      () => signed(body, { headers: { "x-hub-signature": `=${signJira(body, SECRET).slice("sha256=".length)}` } }),
      "signature mismatch",
      "X-Hub-Signature is not method=signature",
    ],
    [
      "with a digest followed by more",
      () => signed(body, { headers: { "x-hub-signature": `${signJira(body, SECRET)}00` } }),
      "signature mismatch",
      mismatch,
    ],
  ];

  it.each(refusals)("refuses a request %s with 401 and says which check failed", (_name, request, message, detail) => {
    const rejection = rejectionOf(() => jira.verify(request(), [SECRET]));
    expect(rejection.status).toBe(401);
    expect(rejection.message).toBe(message);
    expect(rejection.detail).toBe(detail);
    const expected = signJira(body, SECRET).slice("sha256=".length);
    for (const text of [rejection.message, rejection.detail ?? ""]) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(expected);
    }
  });
});

describe("JiraProvider.parse", () => {
  it("normalizes comment_created from Jira Cloud", () => {
    const request = signed(fixture("jira-comment-created.json"));
    jira.verify(request, [SECRET]);
    const event = eventOf(jira.parse(request), jira);
    expect(event.deliveryId).toBe(IDENTIFIER);
    expect(event.sourceId).toBe("https://example.atlassian.net");
    expect(event.eventType).toBe("comment_created");
    expect(event.action).toBe("");
    expect(event.text).toBe(`@hookmesh please reproduce this on staging. ${NON_ASCII}\n{code}npm test -- login{code}`);
    expect(event.label).toBe("");
    expect(event.actor).toMatchObject({ id: "5b10ac8d82e05b22cc7d4ef5", login: "Jürgen Müller", bot: false });
    expect(event.subject?.ref).toEqual({
      case: "jira",
      value: expect.objectContaining({
        siteUrl: "https://example.atlassian.net",
        issueKey: "PROJ-7",
        commentId: "10077",
      }),
    });
    expect(event.subject?.key).toBe("jira:PROJ-7");
    expect(event.subject?.url).toBe("https://example.atlassian.net/browse/PROJ-7?focusedCommentId=10077");
    expect(event.subject?.title).toBe(`Login fails for names with umlauts (${NON_ASCII})`);
  });

  it("normalizes jira:issue_updated: the acting user, the label added, the description as text", () => {
    const event = eventOf(jira.parse(signed(fixture("jira-issue-updated.json"))), jira);
    expect(event.eventType).toBe("jira:issue_updated");
    expect(event.action).toBe("issue_generic");
    expect(event.actor).toMatchObject({
      id: "557058:c9ebf848-dfac-4c49-9408-dc34bd0e2d85",
      login: "Aiko Tanaka",
      bot: false,
    });
    expect(event.label).toBe("hookmesh");
    expect(event.text).toBe("Users named Jürgen cannot log in.\nSteps: sign up as 日本語 user 👋");
    expect(event.subject?.ref.value).toMatchObject({
      siteUrl: "https://example.atlassian.net",
      issueKey: "PROJ-7",
      commentId: "",
    });
    expect(event.subject?.key).toBe("jira:PROJ-7");
    expect(event.subject?.url).toBe("https://example.atlassian.net/browse/PROJ-7");
    expect(event.subject?.title).toBe(`Login fails for names with umlauts (${NON_ASCII})`);
  });

  it("takes an issue_commented update's text from its comment, never the description", () => {
    const payload = fixtureJson("jira-issue-updated.json");
    payload.issue_event_type_name = "issue_commented";
    payload.comment = { ...(fixtureJson("jira-comment-created.json").comment as Json), body: "" };
    delete payload.changelog;
    const event = eventOf(jira.parse(signed(JSON.stringify(payload))), jira);
    expect(event.action).toBe("issue_commented");
    expect(event.text).toBe("");
    expect(event.subject?.ref.value).toMatchObject({ commentId: "10077" });
  });

  it("extracts the text of a comment in Atlassian Document Format, mentions included", () => {
    const payload = fixtureJson("jira-comment-created.json");
    const comment = payload.comment as Json;
    comment.body = {
      version: 1,
      type: "doc",
      content: [
        {
          type: "paragraph",
          content: [
            { type: "mention", attrs: { id: "712020:0b5f", text: "@hookmesh", accessType: "" } },
            { type: "text", text: " please look " },
            { type: "text", text: NON_ASCII, marks: [{ type: "strong" }] },
            { type: "hardBreak" },
            { type: "emoji", attrs: { shortName: ":wave:", id: "1f44b", text: "👋" } },
          ],
        },
        { type: "codeBlock", attrs: { language: "bash" }, content: [{ type: "text", text: "npm test" }] },
        {
          type: "bulletList",
          content: [
            { type: "listItem", content: [{ type: "paragraph", content: [{ type: "text", text: "one" }] }] },
            {
              type: "listItem",
              content: [
                { type: "paragraph", content: [{ type: "inlineCard", attrs: { url: "https://example.com/a" } }] },
              ],
            },
          ],
        },
        { type: "rule" },
      ],
    };
    const event = eventOf(jira.parse(signed(JSON.stringify(payload))), jira);
    expect(event.text).toBe(`@hookmesh please look ${NON_ASCII}\n👋\nnpm test\none\nhttps://example.com/a`);
  });

  it("marks an app account as a bot, and takes a comment's editor as the actor of comment_updated", () => {
    const payload = fixtureJson("jira-comment-created.json");
    payload.webhookEvent = "comment_updated";
    (payload.comment as Json).updateAuthor = { accountId: "712020:0b5f", displayName: "hookmesh", accountType: "app" };
    const event = eventOf(jira.parse(signed(JSON.stringify(payload))), jira);
    expect(event.actor).toMatchObject({ id: "712020:0b5f", login: "hookmesh", bot: true });
  });

  it("keeps the context path of a Jira Server site and its account names", () => {
    const payload = {
      timestamp: 1436393406946,
      webhookEvent: "jira:issue_created",
      issue_event_type_name: "issue_created",
      user: {
        self: "https://jira.example.com/jira/rest/api/2/user?username=ssyfiasty",
        name: "ssyfiasty",
        key: "ssyfiasty",
        displayName: "Pan S",
      },
      issue: {
        id: "10005",
        self: "https://jira.example.com/jira/rest/api/2/issue/10005",
        key: "EM-5",
        fields: { summary: "Zażółć gęślą jaźń", description: null },
      },
    };
    const event = eventOf(
      jira.parse(signed(JSON.stringify(payload), { headers: { "x-atlassian-webhook-identifier": undefined } })),
      jira,
    );
    expect(event.subject?.ref.value).toMatchObject({ siteUrl: "https://jira.example.com/jira", issueKey: "EM-5" });
    expect(event.subject?.url).toBe("https://jira.example.com/jira/browse/EM-5");
    expect(event.actor).toMatchObject({ id: "ssyfiasty", login: "Pan S" });
    expect(event.text).toBe("");
  });

  it("identifies a delivery by X-Atlassian-Webhook-Identifier, which Jira keeps across retries", () => {
    const body = fixture("jira-comment-created.json");
    const retry = signed(body, { headers: { "x-atlassian-webhook-retry": "2" } });
    expect(eventOf(jira.parse(retry), jira).deliveryId).toBe(IDENTIFIER);
    expect(eventOf(jira.parse(retry), jira).sourceId).toBe(eventOf(jira.parse(signed(body)), jira).sourceId);
  });

  it("falls back to the digest of the body when Jira sends no identifier", () => {
    const body = fixture("jira-comment-created.json");
    const event = eventOf(jira.parse(signed(body, { headers: { "x-atlassian-webhook-identifier": undefined } })), jira);
    expect(event.deliveryId).toBe(`sha256:${createHash("sha256").update(body).digest("hex")}`);
    const other = fixture("jira-issue-updated.json");
    expect(
      eventOf(jira.parse(signed(other, { headers: { "x-atlassian-webhook-identifier": undefined } })), jira).deliveryId,
    ).not.toBe(event.deliveryId);
  });

  it.each([
    ["no webhookEvent", JSON.stringify({ timestamp: 1, issue: { key: "PROJ-7" } }), "body has no webhookEvent"],
    [
      "a webhookEvent that is not a string",
      JSON.stringify({ webhookEvent: ["comment_created"] }),
      "body has no webhookEvent",
    ],
    ["invalid JSON", '{"webhookEvent": "comment_created"', "body is not valid JSON"],
    ["an array", "[]", "body must be a JSON object"],
    ["an empty body", "", "body is not valid JSON"],
  ])("refuses a body with %s with 400", (_name, body, message) => {
    const rejection = rejectionOf(() => jira.parse(signed(body)));
    expect([rejection.status, rejection.message]).toEqual([400, message]);
  });
});

describe("JiraProvider on malformed input", () => {
  it("stops reading a document deeper than any Jira writes, instead of overflowing the stack", () => {
    expect(eventOf(jira.parse(incoming(deepComment(200_000), {}, JSON_TYPE, RECEIVED)), jira).text).toBe("");
  });

  it("throws nothing but 400 WebhookRejections for truncated and hostile bodies", () => {
    const sample = fixture("jira-comment-created.json");
    const bodies: Buffer[] = [];
    for (let end = 0; end < sample.length; end += 11) bodies.push(sample.subarray(0, end));
    bodies.push(
      Buffer.from(deepComment(2_000)),
      Buffer.from(
        JSON.stringify({
          webhookEvent: "comment_created",
          comment: { body: { type: "doc", content: [null, 5, "x", [], { content: {} }] } },
        }),
      ),
      Buffer.from(
        JSON.stringify({
          webhookEvent: "jira:issue_updated",
          changelog: { items: [null, { field: "labels", toString: 5, fromString: {} }] },
        }),
      ),
      Buffer.from(
        JSON.stringify({
          webhookEvent: "jira:issue_updated",
          changelog: { items: { field: "labels" } },
          user: "x",
          issue: { self: "javascript:alert(1)", key: 7 },
        }),
      ),
      Buffer.from(
        JSON.stringify({
          webhookEvent: "comment_created",
          comment: { self: "http://[::1", id: 10077, author: null, updateAuthor: null },
        }),
      ),
      Buffer.from(
        JSON.stringify({
          webhookEvent: "x",
          toString: 1,
          valueOf: 1,
          issue: { toString: 1, fields: { summary: { toString: 1 } } },
        }),
      ),
      Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]),
    );
    for (const rawBody of bodies) {
      try {
        expect(jira.parse(incoming(rawBody, {}, JSON_TYPE, RECEIVED)).kind).toBe("event");
      } catch (err) {
        expect(err).toBeInstanceOf(WebhookRejection);
        expect((err as WebhookRejection).status).toBe(400);
      }
    }
  });
});

/** A comment whose ADF body nests `depth` levels deep; written out, as JSON.stringify would overflow the stack. */
function deepComment(depth: number): string {
  const open = '{"type":"blockquote","content":['.repeat(depth);
  return `{"webhookEvent":"comment_created","comment":{"body":${open}{"type":"text","text":"x"}${"]}".repeat(depth)}}}`;
}

function flipByte(body: Buffer, index: number): Buffer {
  const copy = Buffer.from(body);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}
