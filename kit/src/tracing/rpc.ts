import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import {
  type Attributes,
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { currentRequestId, tracer, withRequestId } from "./context.js";

/** The header that carries a request's id from hop to hop, beside the trace context. */
export const REQUEST_ID_HEADER = "x-request-id";

const headerGetter: TextMapGetter<Headers> = {
  get: (headers, key) => headers.get(key) ?? undefined,
  keys: (headers) => [...headers.keys()],
};
const headerSetter: TextMapSetter<Headers> = { set: (headers, key, value) => headers.set(key, value) };

/** Codes that say the server failed, rather than that the caller asked for something it could not have. */
const SERVER_FAULTS: ReadonlySet<Code> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/**
 * Services whose calls make no span (the context still passes through them): probes and
 * tooling that call every few seconds, each of which would otherwise be a trace of its own.
 */
const UNTRACED: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

interface RpcRequest {
  service: { typeName: string };
  method: { name: string };
  header: Headers;
  url: string;
}

/**
 * A span per RPC served, continuing the caller's `traceparent` (a root span without one) and
 * active while the handler runs, so that what it calls and logs belongs to it. It also settles
 * the request id: the caller's `x-request-id`, or a new one written into the request for the
 * call log; outgoing RPCs pass it on. Registered first, so that the call log's line carries
 * the span.
 */
export function tracingServerInterceptor(): Interceptor {
  return (next) => async (req) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.header, headerGetter);
    let requestId = req.header.get(REQUEST_ID_HEADER);
    if (!requestId) {
      requestId = randomUUID();
      req.header.set(REQUEST_ID_HEADER, requestId);
    }
    const span = startRpcSpan(req, SpanKind.SERVER, parent);
    const active = withRequestId(requestId, trace.setSpan(parent, span));
    const end = (err?: unknown) => endRpcSpan(span, err, SERVER_FAULTS);
    try {
      const res = await context.with(active, () => next(req));
      if (!res.stream) {
        end();
        return res;
      }
      // A client that goes away mid-stream ends it with neither a last message nor an error.
      req.signal.addEventListener("abort", () => end(new ConnectError("canceled by the client", Code.Canceled)), {
        once: true,
      });
      return { ...res, message: streamInContext(res.message, active, end) } satisfies StreamResponse;
    } catch (err) {
      end(err);
      throw err;
    }
  };
}

/**
 * A span per RPC attempt made, as the client factory's innermost interceptor (each retry its
 * own span), whose `traceparent` and `tracestate` go out with the call, with the request id
 * of the work in progress (`x-request-id`).
 */
export function tracingClientInterceptor(): Interceptor {
  return (next) => async (req) => {
    const parent = context.active();
    const span = startRpcSpan(req, SpanKind.CLIENT, parent);
    const active = trace.setSpan(parent, span);
    propagation.inject(active, req.header, headerSetter);
    const requestId = currentRequestId();
    if (requestId !== undefined) req.header.set(REQUEST_ID_HEADER, requestId);
    const end = (err?: unknown) => endRpcSpan(span, err);
    try {
      const res = await context.with(active, () => next(req));
      if (!res.stream) {
        end();
        return res;
      }
      return { ...res, message: streamInContext(res.message, active, end) } satisfies StreamResponse;
    } catch (err) {
      end(err);
      throw err;
    }
  };
}

function startRpcSpan(req: RpcRequest, kind: SpanKind, parent: Context): Span {
  if (UNTRACED.has(req.service.typeName)) {
    return trace.wrapSpanContext(trace.getSpanContext(parent) ?? INVALID_SPAN_CONTEXT);
  }
  const name = `${req.service.typeName}/${req.method.name}`;
  return tracer().startSpan(name, { kind, attributes: rpcAttributes(req, kind === SpanKind.CLIENT) }, parent);
}

function rpcAttributes(req: RpcRequest, client: boolean): Attributes {
  const attributes: Attributes = {
    "rpc.system": rpcSystem(req.header.get("content-type")),
    "rpc.service": req.service.typeName,
    "rpc.method": req.method.name,
  };
  if (client) {
    const url = new URL(req.url);
    attributes["server.address"] = url.hostname;
    if (url.port) attributes["server.port"] = Number(url.port);
  }
  return attributes;
}

/** gRPC and gRPC-Web are `grpc`; the Connect protocol (browsers, curl) is `connect_rpc`. */
function rpcSystem(contentType: string | null): string {
  return contentType?.startsWith("application/grpc") ? "grpc" : "connect_rpc";
}

/**
 * Ends an RPC's span with its gRPC code, once (a stream may end twice: its reader stops, its
 * caller aborts); an error status for every failure, or only for `faults` (server side).
 */
function endRpcSpan(span: Span, err?: unknown, faults?: ReadonlySet<Code>): void {
  if (!span.isRecording()) return;
  if (err === undefined) {
    span.setAttribute("rpc.grpc.status_code", 0);
  } else {
    const error = ConnectError.from(err);
    span.setAttribute("rpc.grpc.status_code", error.code);
    if (!faults || faults.has(error.code)) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${Code[error.code]}: ${error.rawMessage}` });
    }
  }
  span.end();
}

/**
 * A stream's messages, each read in `ctx` (a handler's generator runs where its consumer pulls
 * it, outside the interceptor's context), with `end` called once as the stream ends: with its
 * error, or with none when it completes or its reader stops early.
 */
async function* streamInContext<T>(
  messages: AsyncIterable<T>,
  ctx: Context,
  end: (err?: unknown) => void,
): AsyncGenerator<T> {
  const iterator = messages[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = await context.with(ctx, () => iterator.next());
      if (next.done) break;
      yield next.value;
    }
    finished = true;
    end();
  } catch (err) {
    finished = true;
    end(err);
    throw err;
  } finally {
    if (!finished) {
      end();
      await context.with(ctx, () => iterator.return?.());
    }
  }
}
