import { EventEmitter, on } from "node:events";
import { ConnectError, Code, type ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponseSchema,
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
  private shuttingDown = false;

  constructor(services: readonly string[], initial: ServingStatus = ServingStatus.NOT_SERVING) {
    this.changes.setMaxListeners(0);
    for (const name of ["", ...services]) this.statuses.set(name, initial);
  }

  /** Sets one service's status (or the server's, for ""). Ignored once shutting down. */
  set(service: string, status: ServingStatus): void {
    if (!this.statuses.has(service)) throw new Error(`unknown health service "${service}"`);
    if (this.shuttingDown || this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.changes.emit("change", service, status);
  }

  /** Sets every service, and the server, to one status. */
  setAll(status: ServingStatus): void {
    for (const name of this.statuses.keys()) this.set(name, status);
  }

  /** NOT_SERVING everywhere, for good: load balancers stop sending before the drain. */
  shutdown(): void {
    this.setAll(ServingStatus.NOT_SERVING);
    this.shuttingDown = true;
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  all(): ReadonlyMap<string, ServingStatus> {
    return this.statuses;
  }

  /** The current status of `service`, then each change, until `signal` aborts. */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<ServingStatus> {
    const changes = on(this.changes, "change", { signal });
    let last = this.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
    yield last;
    try {
      for await (const [name, status] of changes as AsyncIterable<[string, ServingStatus]>) {
        if (name === service && status !== last) {
          last = status;
          yield status;
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err;
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
