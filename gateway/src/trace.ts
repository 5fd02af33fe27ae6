import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { create } from "@bufbuild/protobuf";
import { type TraceContext, TraceContextSchema } from "../../gen/hookmesh/events/v1/event_pb.js";

const TRACEPARENT = /^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * The delivery's W3C trace context: the caller's when it sent a valid `traceparent`
 * (a proxy in front of the gateway may have), otherwise a new sampled trace starting here.
 */
export function traceContextOf(headers: IncomingHttpHeaders): TraceContext {
  const traceparent = headers.traceparent;
  if (typeof traceparent === "string" && TRACEPARENT.test(traceparent)) {
    return create(TraceContextSchema, {
      traceparent,
      tracestate: typeof headers.tracestate === "string" ? headers.tracestate : "",
    });
  }
  return create(TraceContextSchema, {
    traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`,
  });
}
