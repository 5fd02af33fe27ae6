import { EventEmitter, on } from "node:events";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";

export { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";

/**
 * The serving status of a process and of each service it hosts, as `grpc.health.v1.Health`
 * reports it. The empty name is the whole server. Readiness is pushed here by whatever
 * knows it (a Redis connection going up or down, a drain starting), and Watch streams
 * every change.
 */
export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly changes = new EventEmitter();
  /** Aborted at shutdown, ending every Watch stream so the drain need not wait for them. */
  private readonly stopped = new AbortController();

  constructor(services: readonly string[], initial: ServingStatus = ServingStatus.NOT_SERVING) {
    this.changes.setMaxListeners(0);
    for (const name of ["", ...services]) this.statuses.set(name, initial);
  }

  /** Sets one service's status (or the server's, for ""). Ignored once shutting down. */
  set(service: string, status: ServingStatus): void {
    if (!this.statuses.has(service)) throw new Error(`unknown health service "${service}"`);
    if (this.stopped.signal.aborted || this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.changes.emit("change", service, status);
  }

  /** Sets every service, and the server, to one status. */
  setAll(status: ServingStatus): void {
    for (const name of this.statuses.keys()) this.set(name, status);
  }

  /**
   * NOT_SERVING everywhere, for good: load balancers stop sending before the drain. Watch
   * streams get the NOT_SERVING, then end.
   */
  shutdown(): void {
    this.setAll(ServingStatus.NOT_SERVING);
    this.stopped.abort();
  }

  /**
   * Aborts at shutdown, when the drain starts: a server stream that never ends on its own ends
   * on it, as Watch does, so that the drain need not wait out its grace for it.
   */
  get stopping(): AbortSignal {
    return this.stopped.signal;
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  all(): ReadonlyMap<string, ServingStatus> {
    return this.statuses;
  }

  /** The current status of `service`, then each change, until `signal` aborts or shutdown. */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<ServingStatus> {
    const until = AbortSignal.any([signal, this.stopped.signal]);
    let last = this.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
    if (until.aborted) {
      yield last;
      return;
    }
    // Subscribed before the first yield, so no change is missed; events emitted before an
    // abort are still delivered, because `on` drains its queue before it throws.
    const changes = on(this.changes, "change", { signal: until });
    yield last;
    try {
      for await (const [name, status] of changes as AsyncIterable<[string, ServingStatus]>) {
        if (name === service && status !== last) {
          last = status;
          yield status;
        }
      }
    } catch (err) {
      if (!until.aborted) throw err;
    }
  }
}

/** Routes for `grpc.health.v1.Health` over a HealthState. */
export function healthRoutes(state: HealthState) {
  return (router: ConnectRouter) =>
    router.service(Health, {
      check(req) {
        const status = state.get(req.service);
        if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return { status };
      },
      async *watch(req, ctx) {
        for await (const status of state.watch(req.service, ctx.signal)) {
          yield create(HealthCheckResponseSchema, { status });
        }
      },
      list() {
        const statuses = Object.fromEntries(
          [...state.all()].map(([name, status]) => [name, create(HealthCheckResponseSchema, { status })]),
        );
        return create(HealthListResponseSchema, { statuses });
      },
    });
}
