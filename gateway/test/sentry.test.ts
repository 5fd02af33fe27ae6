import { createHash } from "node:crypto";
import { signSentry } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../src/http-errors.js";
import { SENTRY_MAX_BODY_BYTES, SentryProvider } from "../src/sentry/provider.js";
import { fixture } from "../src/testing.js";
import type { IncomingWebhook } from "../src/webhook-provider.js";
import { eventOf, incoming, rejectionOf } from "./provider-helpers.js";

const SECRET = "b7f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1";
const OLD_SECRET = "0ld0c1e5ec7e7";
const JSON_TYPE = "application/json";
const RECEIVED = new Date("2024-05-01T12:00:00Z");
const REQUEST_ID = "c7b3e2f0-2c1a-4b7e-9f0a-3d5e8c1b2a4f";
const NON_ASCII = "Grüße 👋 日本語";

const sentry = new SentryProvider();

/** A request signed the way Sentry signs it, with Sentry's headers. */
function signed(
  body: Buffer | string,
  resource: string,
  { secret = SECRET, headers = {} }: { secret?: string; headers?: Record<string, string | undefined> } = {},
): IncomingWebhook {
  const all: Record<string, string | undefined> = {
    "content-type": JSON_TYPE,
    "request-id": REQUEST_ID,
    "sentry-hook-resource": resource,
    "sentry-hook-timestamp": String(RECEIVED.getTime() / 1000),
    "sentry-hook-signature": signSentry(body, secret),
    ...headers,
  };
  for (const name of Object.keys(all)) if (all[name] === undefined) delete all[name];
  return incoming(body, all, JSON_TYPE, RECEIVED);
}

function sha256Id(body: Buffer | string): string {
  return `sha256:${createHash("sha256").update(body).digest("hex")}`;
}

describe("SentryProvider settings", () => {
  it("takes JSON and answers well within Sentry's 1 s", () => {
    expect(sentry.name).toBe("sentry");
    expect(sentry.provider).toBe(Provider.SENTRY);
    expect(sentry.contentTypes).toEqual([JSON_TYPE]);
    expect(sentry.submitTimeoutMs).toBeLessThanOrEqual(500);
    expect(sentry.maxBodyBytes).toBe(SENTRY_MAX_BODY_BYTES);
    expect(new SentryProvider(2048).maxBodyBytes).toBe(2048);
  });
});

describe("SentryProvider.verify", () => {
  const body = fixture("sentry-issue-created.json");

  it("accepts the bare hex signature over the raw bytes, non-ASCII included", () => {
    expect(() => sentry.verify(signed(body, "issue"), [SECRET])).not.toThrow();
  });

  it("accepts a signature by any configured secret, so secrets can be rotated", () => {
    expect(() => sentry.verify(signed(body, "issue", { secret: OLD_SECRET }), [SECRET, OLD_SECRET])).not.toThrow();
    expect(() => sentry.verify(signed(body, "issue", { secret: SECRET }), [OLD_SECRET, SECRET])).not.toThrow();
  });

  const mismatch = "Sentry-Hook-Signature does not match any configured client secret";
  const refusals: Array<[string, () => IncomingWebhook, string, string]> = [
    ["forged with another secret", () => signed(body, "issue", { secret: "guessed" }), "signature mismatch", mismatch],
    [
      "signed by a secret no longer configured",
      () => signed(body, "issue", { secret: OLD_SECRET }),
      "signature mismatch",
      mismatch,
    ],
    [
      "tampered (one byte changed)",
      () => ({ ...signed(body, "issue"), rawBody: flipByte(body, 300) }),
      "signature mismatch",
      mismatch,
    ],
    [
      "signed over re-serialized JSON instead of the bytes sent",
      () => ({ ...signed(JSON.stringify(JSON.parse(body.toString("utf8"))), "issue"), rawBody: body }),
      "signature mismatch",
      mismatch,
    ],
    [
      "with a prefix Sentry does not send",
      () => signed(body, "issue", { headers: { "sentry-hook-signature": `sha256=${signSentry(body, SECRET)}` } }),
      "signature mismatch",
      mismatch,
    ],
    [
      "missing Sentry-Hook-Signature",
      () => signed(body, "issue", { headers: { "sentry-hook-signature": undefined } }),
      "signature required",
      "missing Sentry-Hook-Signature",
    ],
  ];

  it.each(refusals)("refuses a request %s with 401 and says which check failed", (_name, request, message, detail) => {
    const rejection = rejectionOf(() => sentry.verify(request(), [SECRET]));
    expect(rejection.status).toBe(401);
    expect(rejection.message).toBe(message);
    expect(rejection.detail).toBe(detail);
    for (const text of [rejection.message, rejection.detail ?? ""]) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(signSentry(body, SECRET));
    }
  });
});

describe("SentryProvider.parse", () => {
  it("normalizes an issue created", () => {
    const request = signed(fixture("sentry-issue-created.json"), "issue");
    sentry.verify(request, [SECRET]);
    const event = eventOf(sentry.parse(request), sentry);
    expect(event.deliveryId).toBe(REQUEST_ID);
    expect(event.sourceId).toBe("a8e5d37a-696c-4c54-adb5-b3f28d64c7de");
    expect(event.eventType).toBe("issue");
    expect(event.action).toBe("created");
    expect(event.text).toBe("");
    expect(event.actor).toMatchObject({ id: "sentry", login: "Sentry", bot: true });
    expect(event.subject?.ref).toEqual({
      case: "sentry",
      value: expect.objectContaining({ organizationSlug: "acme", projectSlug: "front-end", issueId: "1170820242" }),
    });
    expect(event.subject?.key).toBe("sentry:1170820242");
    expect(event.subject?.url).toBe("https://sentry.io/organizations/acme/issues/1170820242/");
    expect(event.subject?.title).toBe(`ReferenceError: ${NON_ASCII} is not defined`);
  });

  it("reads the organization from an organization domain", () => {
    const payload = JSON.parse(fixture("sentry-issue-created.json").toString("utf8")) as {
      data: { issue: Record<string, unknown> };
    };
    payload.data.issue.web_url = "https://acme-corp.sentry.io/issues/1170820242/";
    const event = eventOf(sentry.parse(signed(JSON.stringify(payload), "issue")), sentry);
    expect(event.subject?.ref.value).toMatchObject({ organizationSlug: "acme-corp" });
    payload.data.issue.web_url = "https://us.sentry.io/issues/1170820242/";
    expect(eventOf(sentry.parse(signed(JSON.stringify(payload), "issue")), sentry).subject?.ref.value).toMatchObject({
      organizationSlug: "",
    });
  });

  it("normalizes a comment created, its text verbatim", () => {
    const event = eventOf(sentry.parse(signed(fixture("sentry-comment-created.json"), "comment")), sentry);
    expect(event.eventType).toBe("comment");
    expect(event.action).toBe("created");
    expect(event.text).toBe(`@hookmesh can you find the commit? ${NON_ASCII}`);
    expect(event.actor).toMatchObject({ id: "1", login: "colleen", bot: false });
    expect(event.subject?.ref.value).toMatchObject({
      organizationSlug: "",
      projectSlug: "front-end",
      issueId: "1170820242",
    });
    // The same issue as the issue webhook's: one key for both.
    expect(event.subject?.key).toBe("sentry:1170820242");
  });

  it("names the issue of an event_alert's event", () => {
    const alert = {
      action: "triggered",
      actor: { id: "sentry", name: "Sentry", type: "application" },
      data: {
        event: {
          event_id: "e4874d664c3540c1a32eab185f12c5ab",
          issue_id: "1170820242",
          project: 1,
          title: `ReferenceError: ${NON_ASCII}`,
          url: "https://sentry.io/api/0/projects/acme/front-end/events/e4874d664c3540c1a32eab185f12c5ab/",
          web_url: "https://sentry.io/organizations/acme/issues/1170820242/events/e4874d664c3540c1a32eab185f12c5ab/",
          issue_url: "https://sentry.io/api/0/issues/1170820242/",
        },
        triggered_rule: "Send a notification for new issues",
      },
      installation: { uuid: "a8e5d37a-696c-4c54-adb5-b3f28d64c7de" },
    };
    const event = eventOf(sentry.parse(signed(JSON.stringify(alert), "event_alert")), sentry);
    expect(event.eventType).toBe("event_alert");
    expect(event.action).toBe("triggered");
    expect(event.subject?.ref.value).toMatchObject({
      organizationSlug: "acme",
      projectSlug: "",
      issueId: "1170820242",
    });
    expect(event.subject?.key).toBe("sentry:1170820242");
    expect(event.subject?.title).toBe(`ReferenceError: ${NON_ASCII}`);
  });

  it("passes other resources through with their action and actor", () => {
    const installation = {
      action: "created",
      actor: { id: 1, name: "Meredith Heller", type: "user" },
      data: {
        installation: {
          status: "pending",
          organization: { slug: "test-org" },
          uuid: "a8e5d37a-696c-4c54-adb5-b3f28d64c7de",
        },
      },
      installation: { uuid: "a8e5d37a-696c-4c54-adb5-b3f28d64c7de" },
    };
    const event = eventOf(sentry.parse(signed(JSON.stringify(installation), "installation")), sentry);
    expect([event.eventType, event.action]).toEqual(["installation", "created"]);
    expect(event.actor).toMatchObject({ id: "1", login: "Meredith Heller", bot: false });
    expect(event.subject?.key).toBe("");
  });

  it("identifies a delivery by Request-ID, or by the digest of its body when there is none", () => {
    const body = fixture("sentry-issue-created.json");
    expect(eventOf(sentry.parse(signed(body, "issue")), sentry).deliveryId).toBe(REQUEST_ID);
    const withoutId = eventOf(sentry.parse(signed(body, "issue", { headers: { "request-id": undefined } })), sentry);
    expect(withoutId.deliveryId).toBe(sha256Id(body));
    const other = fixture("sentry-comment-created.json");
    expect(
      eventOf(sentry.parse(signed(other, "comment", { headers: { "request-id": undefined } })), sentry).deliveryId,
    ).toBe(sha256Id(other));
  });

  it("refuses a request without Sentry-Hook-Resource with 400", () => {
    const request = signed(fixture("sentry-issue-created.json"), "issue", {
      headers: { "sentry-hook-resource": undefined },
    });
    const rejection = rejectionOf(() => sentry.parse(request));
    expect([rejection.status, rejection.message]).toEqual([400, "missing Sentry-Hook-Resource header"]);
  });

  it.each([
    ["invalid JSON", '{"action": "created"', "body is not valid JSON"],
    ["an array", "[1]", "body must be a JSON object"],
    ["a string", '"created"', "body must be a JSON object"],
    ["an empty body", "", "body is not valid JSON"],
  ])("refuses a body with %s with 400", (_name, body, message) => {
    const rejection = rejectionOf(() => sentry.parse(signed(body, "issue")));
    expect([rejection.status, rejection.message]).toEqual([400, message]);
  });
});

describe("SentryProvider on malformed input", () => {
  it("throws nothing but 400 WebhookRejections for truncated and hostile bodies", () => {
    const sample = fixture("sentry-issue-created.json");
    const bodies: Buffer[] = [];
    for (let end = 0; end < sample.length; end += 9) bodies.push(sample.subarray(0, end));
    bodies.push(
      Buffer.from(
        JSON.stringify({
          action: 5,
          actor: "sentry",
          data: { issue: { id: -1, project: [], web_url: "http://[::1" } },
        }),
      ),
      Buffer.from(
        JSON.stringify({ data: { issue: { web_url: "https://sentry.io/organizations/%E0%A4%A/issues/1/" } } }),
      ),
      Buffer.from(
        JSON.stringify({
          data: { comment: { toString: 1 }, issue_id: 1e300, project_slug: null },
          toString: 1,
          valueOf: 1,
        }),
      ),
      Buffer.from(JSON.stringify({ data: null, installation: [], actor: { id: { toString: 1 }, type: null } })),
    );
    for (const rawBody of bodies) {
      for (const resource of ["issue", "comment", "event_alert", "error", "metric_alert"]) {
        try {
          expect(sentry.parse(signed(rawBody, resource)).kind).toBe("event");
        } catch (err) {
          expect(err).toBeInstanceOf(WebhookRejection);
          expect((err as WebhookRejection).status).toBe(400);
        }
      }
    }
  });
});

function flipByte(body: Buffer, index: number): Buffer {
  const copy = Buffer.from(body);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}
