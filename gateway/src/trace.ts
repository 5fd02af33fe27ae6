import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { create } from "@bufbuild/protobuf";
import { traceparentOf, tracer, withRequestId } from "@hookmesh/kit";
import {
  type Context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { type TraceContext, TraceContextSchema } from "../../gen/hookmesh/events/v1/event_pb.js";
import { RandomPool } from "./random-pool.js";

/** Trace and span ids for requests that brought none (every request, without a tracing proxy in front). */
const ids = new RandomPool();

/** A request id a sender (or a proxy in front of the gateway) may set; anything else gets a new one. */
const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** A webhook request's span, and the context to handle the request in. */
export interface WebhookSpan {
  span: Span;
  context: Context;
}

/**
 * The span of a webhook request, continuing the sender's `traceparent` when it sent a valid one
 * (a proxy in front of the gateway may have). Without an exporter no span is recorded, and a
 * request that brought no trace gets a new sampled trace id all the same: the delivery's log
 * lines, RPCs and task carry it in every service.
 */
export function startWebhookSpan(req: IncomingMessage, path: string): WebhookSpan {
  const sent = req.headers["x-request-id"];
  const requestId = typeof sent === "string" && REQUEST_ID.test(sent) ? sent : randomUUID();
  const parent = withRequestId(requestId, propagation.extract(ROOT_CONTEXT, req.headers));
  let span = tracer().startSpan(
    `${req.method} /webhooks/{endpoint}`,
    {
      kind: SpanKind.SERVER,
      attributes: { "http.request.method": req.method ?? "", "http.route": "/webhooks/{endpoint}", "url.path": path },
    },
    parent,
  );
  if (!trace.isSpanContextValid(span.spanContext())) {
    span = trace.wrapSpanContext({
      traceId: ids.hex(16),
      spanId: ids.hex(8),
      traceFlags: TraceFlags.SAMPLED,
    });
  }
  return { span, context: trace.setSpan(parent, span) };
}

/** Ends a webhook request's span with its answer; only the gateway's own failures (5xx) are errors. */
export function endWebhookSpan(span: Span, status: number): void {
  span.setAttribute("http.response.status_code", status);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/**
 * The trace context a delivery's event carries to its task: the active span's (the webhook
 * request's, or a redelivery's RPC), so that the run that handles the task continues the trace;
 * a new sampled trace when there is none.
 */
export function traceContextOf(): TraceContext {
  const active = traceparentOf();
  if (active) return create(TraceContextSchema, active);
  return create(TraceContextSchema, {
    traceparent: `00-${ids.hex(16)}-${ids.hex(8)}-01`,
  });
}
