import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import { create } from "@bufbuild/protobuf";
import { EventSchema, type Event } from "../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../src/http-errors.js";
import type { IncomingWebhook, ProviderVerdict, WebhookProvider } from "../src/webhook-provider.js";

/**
 * The providers' signing schemes, written from their documentation independently of the
 * gateway's verifiers, so that a test signs a delivery the way the provider would.
 */

/** Slack: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`. */
export function signSlack(body: Buffer | string, secret: string, timestamp: number | string): string {
  return `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:`).update(body).digest("hex")}`;
}

/** Jira: WebSub's `method=signature`, `sha256=` + hex HMAC-SHA256 of the raw body. */
export function signJira(body: Buffer | string, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Sentry: the bare hex HMAC-SHA256 of the raw body under the client secret. */
export function signSentry(body: Buffer | string, secret: string): string {
  return createHmac("sha256", secret).update(body).digest("hex");
}

/** A fixture's bytes exactly as stored: deliveries are signed and verified on these. */
export function fixture(name: string): Buffer {
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
}

/** A request as the pipeline hands it to a provider, with lower-cased header names as Node has them. */
export function incoming(rawBody: Buffer | string, headers: IncomingHttpHeaders, contentType: string, receivedAt: Date): IncomingWebhook {
  return { headers, rawBody: Buffer.from(rawBody), contentType, receivedAt };
}

/** The WebhookRejection `run` throws; fails the test if it throws nothing or something else. */
export function rejectionOf(run: () => unknown): WebhookRejection {
  try {
    run();
  } catch (err) {
    if (err instanceof WebhookRejection) return err;
    throw err;
  }
  throw new Error("expected a WebhookRejection");
}

/** The Event a provider's verdict describes, as the pipeline would build it. */
export function eventOf(verdict: ProviderVerdict, provider: WebhookProvider): Event {
  if (verdict.kind !== "event") throw new Error(`expected an event, got a ${verdict.kind}`);
  return create(EventSchema, { ...verdict.event, provider: provider.provider });
}
