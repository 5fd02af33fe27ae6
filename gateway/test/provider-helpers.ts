import type { IncomingHttpHeaders } from "node:http";
import { create } from "@bufbuild/protobuf";
import { type Event, EventSchema } from "../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "../src/http-errors.js";
import type { IncomingWebhook, ProviderVerdict, WebhookProvider } from "../src/webhook-provider.js";

/** A request as the pipeline hands it to a provider, with lower-cased header names as Node has them. */
export function incoming(
  rawBody: Buffer | string,
  headers: IncomingHttpHeaders,
  contentType: string,
  receivedAt: Date,
): IncomingWebhook {
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
