import { createRequire } from "node:module";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { TraceContextSchema } from "../../gen/hookmesh/events/v1/event_pb.js";
import type { GitHubDelivery } from "../src/github/normalize.js";

/**
 * Real GitHub webhook payloads from `@octokit/webhooks-examples`. The package's main entry is
 * a JSON file (an array of {name, examples}); `require` loads it the same way under Node and
 * vitest, where a default `import` of JSON would need an import attribute in Node.
 */
const definitions = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];

export type Payload = Record<string, unknown>;

/** Every example payload of one event type; fails loudly if the package has none. */
export function examplesOf(eventType: string): Payload[] {
  const definition = definitions.find((d) => d.name === eventType);
  if (!definition || definition.examples.length === 0) throw new Error(`no examples for ${eventType}`);
  // Copies, so that a test editing a payload cannot affect another.
  return definition.examples.map((p) => structuredClone(p) as unknown as Payload);
}

/** The first example of `eventType` whose `action` is `action`. */
export function exampleOf(eventType: string, action?: string): Payload {
  const found = examplesOf(eventType).find((p) => action === undefined || p.action === action);
  if (!found) throw new Error(`no ${eventType} example with action ${action}`);
  return found;
}

export const EXAMPLE_RECEIVED = new Date("2024-05-01T12:00:00Z");
export const EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** A verified delivery of `payload`, as the webhook handler hands it to normalizeGitHub. */
export function githubDelivery(eventType: string, payload: Payload, overrides: Partial<GitHubDelivery> = {}): GitHubDelivery {
  return {
    eventType,
    deliveryId: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    hookId: "109948940",
    payload,
    rawBody: Buffer.from(JSON.stringify(payload)),
    contentType: "application/json",
    receiveTime: timestampFromDate(EXAMPLE_RECEIVED),
    traceContext: create(TraceContextSchema, { traceparent: EXAMPLE_TRACEPARENT }),
    ...overrides,
  };
}
