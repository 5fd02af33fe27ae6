import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/**
 * Seconds. RPCs inside the mesh take a millisecond or two; a submit that waits on Redis or a
 * call that an integration service forwards to a provider takes up to seconds.
 */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type RpcLabels = "rpc_service" | "rpc_method" | "code";
type ClientLabels = "downstream" | RpcLabels;
type BreakerLabels = "downstream" | "rpc_service" | "rpc_method";

/**
 * The chassis's metric families, one set per service registry. Labels follow the OpenTelemetry
 * RPC conventions (`rpc.service` is the proto service's full name, `rpc.method` the method's),
 * and `code` is the Connect code's name (`OK`, `Unavailable` …), as in the call log.
 * `downstream` is the base URL the client calls.
 */
export interface RpcMetrics {
  serverHandled: Counter<RpcLabels>;
  serverDuration: Histogram<RpcLabels>;
  clientHandled: Counter<ClientLabels>;
  clientDuration: Histogram<ClientLabels>;
  /** Attempts after the first, by the code that failed the attempt before. */
  retries: Counter<ClientLabels>;
  /** Retries not made because the downstream's retry budget was spent. */
  retryBudgetExhausted: Counter<"downstream">;
  /** 1 for the breaker's current state, 0 for the other two. */
  breakerState: Gauge<BreakerLabels | "state">;
  breakerTransitions: Counter<BreakerLabels | "state">;
  /** Calls an open breaker failed at once, without sending them. */
  breakerRejected: Counter<BreakerLabels>;
  /** Endpoints of a balanced downstream (a peer of several addresses), by state: serving, not_serving, ejected. */
  clientEndpoints: Gauge<"downstream" | "state">;
  /** Times an endpoint was ejected for outage results in a row. */
  clientEjections: Counter<"downstream" | "endpoint">;
}

export function createRpcMetrics(registry: Registry): RpcMetrics {
  const registers = [registry];
  return {
    serverHandled: new Counter({
      name: "hookmesh_rpc_server_handled_total",
      help: "RPCs served, by method and the code they ended with (streams counted when they end).",
      labelNames: ["rpc_service", "rpc_method", "code"],
      registers,
    }),
    serverDuration: new Histogram({
      name: "hookmesh_rpc_server_duration_seconds",
      help: "Time to serve a unary RPC, by method and code. A stream lasts as long as its caller listens, which says nothing about latency.",
      labelNames: ["rpc_service", "rpc_method", "code"],
      buckets: RPC_BUCKETS,
      registers,
    }),
    clientHandled: new Counter({
      name: "hookmesh_rpc_client_handled_total",
      help: "RPCs made, by downstream, method and the code they ended with, after any retries.",
      labelNames: ["downstream", "rpc_service", "rpc_method", "code"],
      registers,
    }),
    clientDuration: new Histogram({
      name: "hookmesh_rpc_client_duration_seconds",
      help: "Time a unary RPC took as its caller saw it, retries included, by downstream, method and code.",
      labelNames: ["downstream", "rpc_service", "rpc_method", "code"],
      buckets: RPC_BUCKETS,
      registers,
    }),
    retries: new Counter({
      name: "hookmesh_rpc_client_retries_total",
      help: "RPC attempts retried, by downstream, method and the code of the failed attempt.",
      labelNames: ["downstream", "rpc_service", "rpc_method", "code"],
      registers,
    }),
    retryBudgetExhausted: new Counter({
      name: "hookmesh_rpc_client_retry_budget_exhausted_total",
      help: "Retries not made because the downstream's retry budget was spent.",
      labelNames: ["downstream"],
      registers,
    }),
    breakerState: new Gauge({
      name: "hookmesh_circuit_breaker_state",
      help: "1 for the current state (closed, open, half_open) of the breaker of each downstream and method, 0 for the others.",
      labelNames: ["downstream", "rpc_service", "rpc_method", "state"],
      registers,
    }),
    breakerTransitions: new Counter({
      name: "hookmesh_circuit_breaker_transitions_total",
      help: "Breaker state changes, by downstream, method and the state entered.",
      labelNames: ["downstream", "rpc_service", "rpc_method", "state"],
      registers,
    }),
    breakerRejected: new Counter({
      name: "hookmesh_circuit_breaker_rejected_total",
      help: "Calls failed fast by an open breaker, without being sent.",
      labelNames: ["downstream", "rpc_service", "rpc_method"],
      registers,
    }),
    clientEndpoints: new Gauge({
      name: "hookmesh_rpc_client_endpoints",
      help: "Endpoints of each balanced downstream, by state: serving (picked), not_serving (its health watch says so, or failed) and ejected (outage results in a row).",
      labelNames: ["downstream", "state"],
      registers,
    }),
    clientEjections: new Counter({
      name: "hookmesh_rpc_client_ejections_total",
      help: "Times an endpoint of a balanced downstream was ejected for outage results (Unavailable, failed connections) in a row.",
      labelNames: ["downstream", "endpoint"],
      registers,
    }),
  };
}

type Labels<L extends string> = Partial<Record<L, string>>;

type Next = Parameters<Interceptor>[0];
type Request = Parameters<Next>[0];
type Response = Awaited<ReturnType<Next>>;

/**
 * Runs one call, counting what it ends with once and timing it if it is unary. A stream ends
 * when its last message is read, when it fails, or when it is abandoned (its signal aborts).
 */
async function observe(
  next: Next,
  req: Request,
  count: (code: string) => void,
  time: (code: string, seconds: number) => void,
): Promise<Response> {
  const started = performance.now();
  const unary = req.method.methodKind === "unary";
  let finished = false;
  const finish = (code: string) => {
    if (finished) return;
    finished = true;
    count(code);
    if (unary) time(code, (performance.now() - started) / 1000);
  };
  try {
    const res = await next(req);
    if (!res.stream) {
      finish("OK");
      return res;
    }
    req.signal.addEventListener("abort", () => finish(Code[Code.Canceled]), { once: true });
    return { ...res, message: observeStream(res.message, finish) } satisfies StreamResponse;
  } catch (err) {
    finish(codeName(err));
    throw err;
  }
}

async function* observeStream<T>(messages: AsyncIterable<T>, finish: (code: string) => void): AsyncGenerator<T> {
  try {
    yield* messages;
    finish("OK");
  } catch (err) {
    finish(codeName(err));
    throw err;
  }
}

function codeName(err: unknown): string {
  return Code[ConnectError.from(err).code];
}

/**
 * Counts and times every call a server handles. It goes first (outermost) in the server's chain,
 * so that it sees the code the caller sees: after errors are mapped to the wire, and including
 * calls the authorization interceptor refuses.
 */
export function serverMetricsInterceptor(metrics: RpcMetrics): Interceptor {
  return (next) => async (req) => {
    const labels: Labels<RpcLabels> = { rpc_service: req.service.typeName, rpc_method: req.method.name };
    return observe(
      next,
      req,
      (code) => metrics.serverHandled.inc({ ...labels, code }),
      (code, seconds) => metrics.serverDuration.observe({ ...labels, code }, seconds),
    );
  };
}

/**
 * Counts and times every call a client makes to `downstream`. It goes first (outermost) in the
 * transport's chain, so that a call is counted once with the code its caller got, however many
 * attempts the retry interceptor inside it made.
 */
export function clientMetricsInterceptor(metrics: RpcMetrics, downstream: string): Interceptor {
  return (next) => async (req) => {
    const labels: Labels<ClientLabels> = {
      downstream,
      rpc_service: req.service.typeName,
      rpc_method: req.method.name,
    };
    return observe(
      next,
      req,
      (code) => metrics.clientHandled.inc({ ...labels, code }),
      (code, seconds) => metrics.clientDuration.observe({ ...labels, code }, seconds),
    );
  };
}
