import {
  type Attributes,
  type Context,
  context,
  createContextKey,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";

/** The instrumentation scope of every span the mesh makes. */
const SCOPE = "hookmesh";

/**
 * The mesh's tracer. Looked up at each use rather than kept: a tracer taken before
 * `startTracing` registers the provider would stay bound to whichever provider it first saw.
 */
export function tracer(): Tracer {
  return trace.getTracer(SCOPE);
}

/** The attributes spans carry about the work they are part of, where they are known. */
export const TRACE_ATTRIBUTES = {
  taskId: "hookmesh.task_id",
  deliveryId: "hookmesh.delivery_id",
  provider: "hookmesh.provider",
  routeId: "hookmesh.route_id",
  attempt: "hookmesh.attempt",
} as const;

/**
 * Runs `fn` in a new span, active for everything `fn` does (the RPCs it makes, the lines it
 * logs), ended when `fn` settles; a throw marks the span as an error and is rethrown. The
 * parent is the active span unless `parent` gives another context.
 */
export function inSpan<T>(
  name: string,
  options: SpanOptions & { parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const { parent = context.active(), ...spanOptions } = options;
  return tracer().startActiveSpan(name, spanOptions, parent, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks a span as failed by `err`, with the exception recorded on it. */
export function failSpan(span: Span, err: unknown, message?: string): void {
  if (!span.isRecording()) return;
  if (err instanceof Error) span.recordException(err);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: message ?? (err instanceof Error ? err.message : String(err)),
  });
}

/** Sets the attributes whose values are known (neither undefined nor empty), as the spans' `hookmesh.*` fields say. */
export function setKnownAttributes(span: Span, attributes: Attributes): void {
  if (!span.isRecording()) return;
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== "") span.setAttribute(key, value);
  }
}

/** Sets the known ones of `attributes` on the active span, if there is one. */
export function annotateActiveSpan(attributes: Attributes): void {
  const span = trace.getActiveSpan();
  if (span) setKnownAttributes(span, attributes);
}

/** A stored W3C trace context: `traceparent` and its optional `tracestate`. */
export interface StoredTraceContext {
  traceparent: string;
  tracestate: string;
}

/**
 * The context a stored `traceparent` names, to continue its trace later or elsewhere (a task
 * leased long after its delivery); the root context when there is none or it is malformed.
 */
export function contextFromTraceparent(stored: Partial<StoredTraceContext> | undefined): Context {
  if (!stored?.traceparent) return ROOT_CONTEXT;
  const carrier: Record<string, string> = { traceparent: stored.traceparent };
  if (stored.tracestate) carrier.tracestate = stored.tracestate;
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** The `traceparent` (and `tracestate`) of `ctx`'s span, to store with work that continues later; undefined without a span. */
export function traceparentOf(ctx: Context = context.active()): StoredTraceContext | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  if (!carrier.traceparent) return undefined;
  return { traceparent: carrier.traceparent, tracestate: carrier.tracestate ?? "" };
}

const REQUEST_ID = createContextKey("hookmesh.request_id");

/** `ctx` with `requestId` as the request id that outgoing RPCs carry (`x-request-id`). */
export function withRequestId(requestId: string, ctx: Context = context.active()): Context {
  return ctx.setValue(REQUEST_ID, requestId);
}

/** The request id the work in progress serves, if any: the incoming RPC's, or one set by `withRequestId`. */
export function currentRequestId(): string | undefined {
  return context.active().getValue(REQUEST_ID) as string | undefined;
}

/** `trace_id` and `span_id` of the active span, for every log line; nothing without one. */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const spanContext = trace.getSpanContext(context.active());
  if (!spanContext || !trace.isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}
