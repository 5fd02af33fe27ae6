import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TraceContextSchema } from "../../gen/hookmesh/events/v1/event_pb.js";
import type { GitHubDelivery } from "../src/github/normalize.js";
import type { Payload } from "../src/testing.js";

export const EXAMPLE_RECEIVED = new Date("2024-05-01T12:00:00Z");
export const EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** A verified delivery of `payload`, as the webhook handler hands it to normalizeGitHub. */
export function githubDelivery(
  eventType: string,
  payload: Payload,
  overrides: Partial<GitHubDelivery> = {},
): GitHubDelivery {
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
