import { createHash, createHmac } from "node:crypto";
import { inspect } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import {
  type CustomRoute,
  CustomRouteSchema,
  HmacAlgorithm,
  SignedContent,
} from "../../gen/hookmesh/gateway/v1/custom_route_pb.js";
import { CUSTOM_DEFAULT_MAX_BODY_BYTES, CustomProvider } from "../src/custom/provider.js";
import { CustomRouteStore } from "../src/custom/route-store.js";
import { WebhookRejection } from "../src/http-errors.js";
import type { IncomingWebhook } from "../src/webhook-provider.js";

type RouteInit = Exclude<MessageInitShape<typeof CustomRouteSchema>, CustomRoute>;
type Algorithm = "sha1" | "sha256" | "sha512";

const SECRET = "custom-provider-secret-5d1e9b";
const OLD_SECRET = "custom-provider-old-secret-a27c";
const NOW = new Date("2024-05-01T12:00:00Z");
const NOW_SECONDS = String(NOW.getTime() / 1000);
const BODY = JSON.stringify({ id: "evt_1", text: "héllo @hookmesh — fix the build ✓", amount: 42 });

/** Every signature made with a configured secret: none may appear in a rejection. */
const signatures = new Set<string>();

function hmac(algorithm: Algorithm, secret: string, content: string | Buffer): string {
  const hex = createHmac(algorithm, secret).update(content).digest("hex");
  signatures.add(hex);
  return hex;
}

function route(init: RouteInit = {}): CustomRoute {
  return create(CustomRouteSchema, {
    name: "acme",
    signatureHeader: "X-Acme-Signature",
    signaturePrefix: "sha256=",
    algorithm: HmacAlgorithm.SHA256,
    signedContent: SignedContent.BODY,
    deliveryIdHeader: "X-Acme-Delivery",
    eventTypeHeader: "X-Acme-Event",
    secret: SECRET,
    hasSecret: true,
    ...init,
  });
}

/** A request as the pipeline hands it over: Node's lower-cased headers, the raw body. */
function webhook(
  headers: Record<string, string>,
  body: string | Buffer = BODY,
  contentType = "application/json",
  receivedAt = NOW,
): IncomingWebhook {
  return {
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])),
    rawBody: Buffer.from(body),
    contentType,
    receivedAt,
  };
}

/** Verifies with the provider's own secrets, as the pipeline does. */
function verify(provider: CustomProvider, request: IncomingWebhook): void {
  provider.verify(request, provider.secrets);
}

function rejection(fn: () => void): WebhookRejection {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof WebhookRejection)) throw err;
    const said = `${err.message} ${err.detail ?? ""} ${JSON.stringify(err.headers)}`;
    for (const secret of [SECRET, OLD_SECRET]) expect(said).not.toContain(secret);
    for (const signature of signatures) expect(said).not.toContain(signature);
    return err;
  }
  throw new Error("expected a WebhookRejection");
}

describe("CustomProvider", () => {
  describe("shape", () => {
    it("is named after the route and takes its limits", () => {
      const provider = new CustomProvider(route({ maxBodyBytes: 4096 }));
      expect(provider.name).toBe("custom/acme");
      expect(provider.provider).toBe(Provider.CUSTOM);
      expect(provider.maxBodyBytes).toBe(4096);
      expect(provider.submitTimeoutMs).toBe(5_000);
      expect(provider.contentTypes).toEqual([
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/octet-stream",
      ]);
    });

    it("takes 1 MiB for a body limit of 0", () => {
      expect(new CustomProvider(route({ maxBodyBytes: 0 })).maxBodyBytes).toBe(CUSTOM_DEFAULT_MAX_BODY_BYTES);
      expect(CUSTOM_DEFAULT_MAX_BODY_BYTES).toBe(1024 * 1024);
    });

    it("splits the secrets for rotation and never shows them", () => {
      const provider = new CustomProvider(route({ secret: ` ${SECRET} , ${OLD_SECRET}` }));
      expect(provider.secrets).toEqual([SECRET, OLD_SECRET]);
      expect(provider.route).toMatchObject({ secret: "", hasSecret: true });
      expect(JSON.stringify(provider)).not.toContain(SECRET);
      expect(inspect(provider, { depth: 10, showHidden: true })).not.toContain(SECRET);
    });

    it("refuses a route with no algorithm", () => {
      expect(() => new CustomProvider(route({ algorithm: HmacAlgorithm.UNSPECIFIED }))).toThrow(/no usable algorithm/);
    });
  });

  describe("verify", () => {
    const algorithms: [HmacAlgorithm, Algorithm][] = [
      [HmacAlgorithm.SHA1, "sha1"],
      [HmacAlgorithm.SHA256, "sha256"],
      [HmacAlgorithm.SHA512, "sha512"],
    ];

    describe.each(algorithms)("with algorithm %i (%s)", (algorithm, name) => {
      it("accepts an HMAC of the body", () => {
        const provider = new CustomProvider(route({ algorithm, signaturePrefix: `${name}=` }));
        verify(provider, webhook({ "X-Acme-Signature": `${name}=${hmac(name, SECRET, BODY)}` }));
      });

      it("accepts an HMAC of `{timestamp}.{body}`", () => {
        const provider = new CustomProvider(
          route({
            algorithm,
            signaturePrefix: "v1=",
            signedContent: SignedContent.TIMESTAMP_DOT_BODY,
            timestampHeader: "X-Acme-Timestamp",
          }),
        );
        const signature = hmac(name, SECRET, `${NOW_SECONDS}.${BODY}`);
        verify(provider, webhook({ "X-Acme-Signature": `v1=${signature}`, "X-Acme-Timestamp": NOW_SECONDS }));
      });

      it("refuses another algorithm's digest", () => {
        const other = name === "sha256" ? "sha512" : "sha256";
        const provider = new CustomProvider(route({ algorithm, signaturePrefix: "" }));
        const err = rejection(() => verify(provider, webhook({ "X-Acme-Signature": hmac(other, SECRET, BODY) })));
        expect(err.status).toBe(401);
      });
    });

    it("verifies the raw bytes, not a re-encoding of them", () => {
      const raw = Buffer.concat([Buffer.from('{"text":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
      const provider = new CustomProvider(route());
      verify(
        provider,
        webhook({ "X-Acme-Signature": `sha256=${hmac("sha256", SECRET, raw)}` }, raw, "application/octet-stream"),
      );
    });

    it("accepts upper-case hex and a prefix in another case", () => {
      const provider = new CustomProvider(route());
      verify(provider, webhook({ "X-Acme-Signature": `SHA256=${hmac("sha256", SECRET, BODY).toUpperCase()}` }));
    });

    it("accepts a bare digest when the route has no prefix", () => {
      const provider = new CustomProvider(route({ signaturePrefix: "" }));
      verify(provider, webhook({ "X-Acme-Signature": hmac("sha256", SECRET, BODY) }));
    });

    it("refuses a digest without the route's prefix", () => {
      const provider = new CustomProvider(route());
      const err = rejection(() => verify(provider, webhook({ "X-Acme-Signature": hmac("sha256", SECRET, BODY) })));
      expect(err).toMatchObject({
        status: 401,
        message: "signature mismatch",
        detail: 'X-Acme-Signature does not start with "sha256="',
      });
    });

    it("refuses a digest with the prefix twice or another prefix", () => {
      const provider = new CustomProvider(route());
      for (const value of [`sha256=sha256=${hmac("sha256", SECRET, BODY)}`, `sha1=${hmac("sha256", SECRET, BODY)}`]) {
        expect(rejection(() => verify(provider, webhook({ "X-Acme-Signature": value }))).status).toBe(401);
      }
    });

    it("accepts any one of the rotated secrets", () => {
      const provider = new CustomProvider(route({ secret: `${SECRET},${OLD_SECRET}` }));
      for (const secret of [SECRET, OLD_SECRET]) {
        verify(provider, webhook({ "X-Acme-Signature": `sha256=${hmac("sha256", secret, BODY)}` }));
      }
    });

    it("refuses a secret rotated out", () => {
      const provider = new CustomProvider(route({ secret: SECRET }));
      const err = rejection(() =>
        verify(provider, webhook({ "X-Acme-Signature": `sha256=${hmac("sha256", OLD_SECRET, BODY)}` })),
      );
      expect(err).toMatchObject({ status: 401, message: "signature mismatch" });
    });

    it("refuses a missing signature", () => {
      const provider = new CustomProvider(route());
      const requests: Record<string, string>[] = [
        {},
        { "X-Acme-Signature": "" },
        { "X-Other-Signature": `sha256=${hmac("sha256", SECRET, BODY)}` },
      ];
      for (const headers of requests) {
        const err = rejection(() => verify(provider, webhook(headers)));
        expect(err).toMatchObject({ status: 401, message: "signature required", detail: "missing X-Acme-Signature" });
      }
    });

    it("refuses a forged signature", () => {
      const provider = new CustomProvider(route());
      const forged = hmac("sha256", "guessed-secret", BODY);
      const err = rejection(() => verify(provider, webhook({ "X-Acme-Signature": `sha256=${forged}` })));
      expect(err).toMatchObject({
        status: 401,
        message: "signature mismatch",
        detail: "X-Acme-Signature does not match any configured secret",
      });
    });

    it("refuses a tampered body", () => {
      const provider = new CustomProvider(route());
      const signature = `sha256=${hmac("sha256", SECRET, BODY)}`;
      const tampered = BODY.replace("42", "4200");
      expect(rejection(() => verify(provider, webhook({ "X-Acme-Signature": signature }, tampered))).status).toBe(401);
    });

    it("refuses malformed digests", () => {
      const provider = new CustomProvider(route());
      const good = hmac("sha256", SECRET, BODY);
      for (const digest of [good.slice(0, -2), `${good}00`, `${good.slice(0, -1)}g`, ` ${good}`, "", "zz"]) {
        expect(rejection(() => verify(provider, webhook({ "X-Acme-Signature": `sha256=${digest}` }))).status).toBe(401);
      }
    });

    it("refuses everything when the route has no secret", () => {
      const provider = new CustomProvider(route({ secret: "" }));
      expect(provider.secrets).toEqual([]);
      const signature = `sha256=${hmac("sha256", "", BODY)}`;
      expect(rejection(() => verify(provider, webhook({ "X-Acme-Signature": signature }))).status).toBe(401);
    });

    describe("timestamped signatures", () => {
      const stripeLike = () =>
        new CustomProvider(
          route({
            signaturePrefix: "v1=",
            signedContent: SignedContent.TIMESTAMP_DOT_BODY,
            timestampHeader: "X-Acme-Timestamp",
          }),
        );
      const signedAt = (seconds: number, body = BODY) => ({
        "X-Acme-Signature": `v1=${hmac("sha256", SECRET, `${seconds}.${body}`)}`,
        "X-Acme-Timestamp": String(seconds),
      });
      const now = NOW.getTime() / 1000;

      it("accepts timestamps up to 5 minutes either way", () => {
        for (const seconds of [now - 300, now - 299, now + 299, now + 300])
          verify(stripeLike(), webhook(signedAt(seconds)));
      });

      it("refuses stale and future timestamps, even correctly signed", () => {
        for (const seconds of [now - 301, now - 3600, now + 301, 0]) {
          const err = rejection(() => verify(stripeLike(), webhook(signedAt(seconds))));
          expect(err.status).toBe(401);
          expect(err.message).toBe("stale timestamp");
        }
        const err = rejection(() => verify(stripeLike(), webhook(signedAt(now - 360))));
        expect(err.detail).toBe("X-Acme-Timestamp is 360 s from the receive time (limit 300 s)");
      });

      it("measures staleness from the receive time", () => {
        const receivedAt = new Date(NOW.getTime() + 10 * 60 * 1000);
        verify(stripeLike(), webhook(signedAt(now + 600), BODY, "application/json", receivedAt));
      });

      it("refuses a missing or malformed timestamp", () => {
        const { "X-Acme-Signature": signature } = signedAt(now);
        const missing = rejection(() => verify(stripeLike(), webhook({ "X-Acme-Signature": signature })));
        expect(missing).toMatchObject({
          status: 401,
          message: "timestamp required",
          detail: "missing X-Acme-Timestamp",
        });
        for (const timestamp of [`${now}.5`, `${now * 1000}000`, "-1", "soon", `${now} `]) {
          const err = rejection(() =>
            verify(stripeLike(), webhook({ "X-Acme-Signature": signature, "X-Acme-Timestamp": timestamp })),
          );
          expect(err.status).toBe(401);
        }
      });

      it("refuses a timestamp changed after signing (a replay with a fresh time)", () => {
        const headers = { ...signedAt(now - 60), "X-Acme-Timestamp": String(now) };
        expect(rejection(() => verify(stripeLike(), webhook(headers))).message).toBe("signature mismatch");
      });

      it("refuses a signature of the body alone", () => {
        const headers = { "X-Acme-Signature": `v1=${hmac("sha256", SECRET, BODY)}`, "X-Acme-Timestamp": String(now) };
        expect(rejection(() => verify(stripeLike(), webhook(headers))).message).toBe("signature mismatch");
      });

      it("refuses a tampered body", () => {
        const headers = signedAt(now);
        expect(rejection(() => verify(stripeLike(), webhook(headers, `${BODY} `))).status).toBe(401);
      });
    });
  });

  describe("parse", () => {
    const bodyHash = `sha256:${createHash("sha256").update(BODY).digest("hex")}`;

    it("takes the delivery id and event type from the route's headers", () => {
      const provider = new CustomProvider(route());
      const verdict = provider.parse(webhook({ "X-Acme-Delivery": "dlv-123", "X-Acme-Event": "invoice.paid" }));
      expect(verdict).toEqual({
        kind: "event",
        event: {
          deliveryId: "dlv-123",
          sourceId: "acme",
          eventType: "invoice.paid",
          subject: { key: "custom:acme" },
          text: "héllo @hookmesh — fix the build ✓",
        },
      });
    });

    it("falls back to the body's SHA-256 and the route's name when the headers are absent", () => {
      const provider = new CustomProvider(route());
      const verdict = provider.parse(webhook({}));
      expect(verdict).toMatchObject({
        kind: "event",
        event: { deliveryId: bodyHash, eventType: "acme", sourceId: "acme" },
      });
    });

    it("uses the body's SHA-256 and the route's name when the route names no headers", () => {
      const provider = new CustomProvider(route({ deliveryIdHeader: "", eventTypeHeader: "" }));
      const verdict = provider.parse(webhook({ "X-Acme-Delivery": "dlv-123", "X-Acme-Event": "invoice.paid" }));
      expect(verdict).toMatchObject({ event: { deliveryId: bodyHash, eventType: "acme" } });
    });

    it("gives the same body the same delivery id, and another body another", () => {
      const provider = new CustomProvider(route({ deliveryIdHeader: "" }));
      const id = (body: string) =>
        (provider.parse(webhook({}, body)) as { event: { deliveryId: string } }).event.deliveryId;
      expect(id(BODY)).toBe(id(BODY));
      expect(id(BODY)).not.toBe(id(`${BODY}\n`));
    });

    it("takes text only from a string `text` field of a JSON object", () => {
      const provider = new CustomProvider(route());
      const text = (body: string, contentType = "application/json") =>
        (provider.parse(webhook({}, body, contentType)) as { event: { text: string } }).event.text;
      expect(text('{"text":"deploy it"}')).toBe("deploy it");
      expect(text('{"text":42}')).toBe("");
      expect(text('{"message":"deploy it"}')).toBe("");
      expect(text('[{"text":"deploy it"}]')).toBe("");
      expect(text('"deploy it"')).toBe("");
      expect(text('{"text":"deploy it"}', "text/plain")).toBe("");
      expect(text("text=deploy+it", "application/x-www-form-urlencoded")).toBe("");
      expect(text("", "application/octet-stream")).toBe("");
    });

    it("refuses a JSON body that is not JSON with 400", () => {
      const provider = new CustomProvider(route());
      for (const body of ["{", "", '{"text":"unterminated}']) {
        const err = rejection(() => provider.parse(webhook({}, body)));
        expect(err).toMatchObject({ status: 400, message: "body is not valid JSON" });
      }
    });

    it("does not read a body of another type", () => {
      const provider = new CustomProvider(route());
      expect(provider.parse(webhook({}, Buffer.from([0, 1, 2, 255]), "application/octet-stream")).kind).toBe("event");
    });
  });

  describe("with a route from the store", () => {
    let db: TestRedis;
    let store: CustomRouteStore;

    beforeEach(async () => {
      db = await testRedis("gateway-custom-provider");
      store = new CustomRouteStore(db.redis, { keyPrefix: db.prefix });
    });
    afterEach(() => db.cleanup());

    it("verifies with the stored secrets, kept across an update without a secret", async () => {
      await store.upsert(route({ secret: `${SECRET},${OLD_SECRET}` }));
      await store.upsert(route({ secret: "", algorithm: HmacAlgorithm.SHA512, signaturePrefix: "" }));
      const provider = new CustomProvider(await store.get("acme"));
      for (const secret of [SECRET, OLD_SECRET]) {
        verify(provider, webhook({ "X-Acme-Signature": hmac("sha512", secret, BODY) }));
      }
      expect(
        rejection(() => verify(provider, webhook({ "X-Acme-Signature": hmac("sha256", SECRET, BODY) }))).status,
      ).toBe(401);
    });

    it("refuses the old secret once it is rotated out", async () => {
      await store.upsert(route({ secret: OLD_SECRET }));
      await store.upsert(route({ secret: SECRET }));
      const provider = new CustomProvider(await store.get("acme"));
      verify(provider, webhook({ "X-Acme-Signature": `sha256=${hmac("sha256", SECRET, BODY)}` }));
      expect(
        rejection(() => verify(provider, webhook({ "X-Acme-Signature": `sha256=${hmac("sha256", OLD_SECRET, BODY)}` })))
          .status,
      ).toBe(401);
    });
  });
});
