import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import CircuitBreaker from "opossum";
import type { Logger } from "../logger.js";
import type { RpcMetrics } from "../metrics/rpc.js";
import { isOutage } from "./codes.js";

export interface BreakerOptions {
  /** Percentage of failed calls in the rolling window that opens the circuit. Default 50. */
  errorThresholdPercentage?: number;
  /** Calls in the rolling window before the circuit may open at all. Default 10. */
  volumeThreshold?: number;
  /** How long an open circuit fails fast before it lets one trial call through. Default 10s. */
  resetTimeoutMs?: number;
  /** The window over which failures are counted. Default 10s. */
  rollingCountTimeoutMs?: number;
}

export type BreakerState = "closed" | "open" | "halfOpen";

export interface BreakerStatus {
  /** The downstream's base URL. */
  downstream: string;
  /** The method, as `/package.Service/Method`. */
  procedure: string;
  state: BreakerState;
}

/** One circuit breaker per downstream and method, created on the first call. */
export interface Breakers {
  /** Runs every call to the downstream through the breaker of its method. */
  interceptor(downstream: string): Interceptor;
  state(downstream: string, method: DescMethod): BreakerState;
  list(): BreakerStatus[];
  /** Stops the breakers' timers; calls made afterwards fail fast. */
  shutdown(): void;
}

type Next = Parameters<Interceptor>[0];
type Request = Parameters<Next>[0];
type Response = Awaited<ReturnType<Next>>;

interface Entry extends Omit<BreakerStatus, "state"> {
  breaker: CircuitBreaker<[Next, Request], Response>;
}

/** The states as the `state` label of `hookmesh_circuit_breaker_*` spells them. */
const STATE_LABELS: Record<BreakerState, string> = { closed: "closed", open: "open", halfOpen: "half_open" };

export function createBreakers(options: BreakerOptions, logger: Logger, metrics?: RpcMetrics): Breakers {
  const entries = new Map<string, Entry>();
  let shutDown = false;

  function entryFor(downstream: string, method: DescMethod): Entry {
    const procedure = procedureOf(method);
    const key = downstream + procedure;
    const existing = entries.get(key);
    if (existing) return existing;
    const breaker = new CircuitBreaker((next: Next, req: Request) => next(req), {
      name: key,
      // Deadlines come from the caller's context; a breaker timer would cut calls short.
      timeout: false,
      errorThresholdPercentage: options.errorThresholdPercentage ?? 50,
      volumeThreshold: options.volumeThreshold ?? 10,
      resetTimeout: options.resetTimeoutMs ?? 10_000,
      rollingCountTimeout: options.rollingCountTimeoutMs ?? 10_000,
      // opossum asks which errors to ignore: everything but an outage.
      errorFilter: (err: unknown) => !isOutage(ConnectError.from(err)),
      // Only the state is read: no snapshot timer, no latencies to sort on every failure.
      enableSnapshots: false,
      rollingPercentilesEnabled: false,
    });
    const fields = { downstream, procedure };
    const observe =
      metrics && observeBreaker(metrics, { downstream, rpc_service: method.parent.typeName, rpc_method: method.name });
    breaker.on("open", () => {
      logger.warn(fields, "circuit opened: failing fast");
      observe?.entered("open");
    });
    breaker.on("halfOpen", () => {
      logger.info(fields, "circuit half-open: letting a trial call through");
      observe?.entered("halfOpen");
    });
    breaker.on("close", () => {
      logger.info(fields, "circuit closed");
      observe?.entered("closed");
    });
    if (observe) breaker.on("reject", observe.rejected);
    // A client can outlive shutdown(); its first call of a method must fail fast as well.
    if (shutDown) breaker.shutdown();
    const entry = { ...fields, breaker };
    entries.set(key, entry);
    return entry;
  }

  return {
    interceptor(downstream) {
      return (next) => async (req) => {
        const { procedure, breaker } = entryFor(downstream, req.method);
        try {
          return await breaker.fire(next, req);
        } catch (err) {
          // The breaker rejected the call without running it. Callers get a ConnectError,
          // like from any other failed call, never an opossum error.
          if (err instanceof Error && CircuitBreaker.isOurError(err)) {
            const why = breaker.isShutdown ? "shut down" : "open";
            throw new ConnectError(`circuit to ${procedure} is ${why}`, Code.Unavailable, undefined, undefined, err);
          }
          throw err;
        }
      };
    },
    state(downstream, method) {
      const entry = entries.get(downstream + procedureOf(method));
      return entry ? stateOf(entry.breaker) : "closed";
    },
    list() {
      return [...entries.values()].map(({ downstream, procedure, breaker }) => ({
        downstream,
        procedure,
        state: stateOf(breaker),
      }));
    },
    shutdown() {
      shutDown = true;
      for (const { breaker } of entries.values()) breaker.shutdown();
    },
  };
}

/** True if the error is a breaker's fast-fail, which must not be retried: nothing was tried. */
export function rejectedByBreaker(err: ConnectError): boolean {
  return err.cause instanceof Error && CircuitBreaker.isOurError(err.cause);
}

/** Keeps one breaker's state gauge current and counts its transitions and the calls it rejects. */
function observeBreaker(metrics: RpcMetrics, labels: { downstream: string; rpc_service: string; rpc_method: string }) {
  const show = (current: BreakerState) => {
    for (const [state, label] of Object.entries(STATE_LABELS)) {
      metrics.breakerState.set({ ...labels, state: label }, state === current ? 1 : 0);
    }
  };
  show("closed");
  return {
    entered(state: BreakerState) {
      show(state);
      metrics.breakerTransitions.inc({ ...labels, state: STATE_LABELS[state] });
    },
    rejected() {
      metrics.breakerRejected.inc(labels);
    },
  };
}

function procedureOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function stateOf(breaker: Entry["breaker"]): BreakerState {
  if (breaker.opened) return "open";
  if (breaker.halfOpen) return "halfOpen";
  return "closed";
}
