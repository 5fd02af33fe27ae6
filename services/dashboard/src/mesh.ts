import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, Code, ConnectError } from "@connectrpc/connect";
import {
  type ClientFactory,
  endpointOrigin,
  type LookupAll,
  type PeerTarget,
  systemLookup,
  targetText,
} from "@hookmesh/kit";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { AgentService } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import {
  BreakerStateSchema,
  type GetMeshHealthResponse,
  GetMeshHealthResponseSchema,
  ServiceHealthSchema,
  type Worker,
  WorkerRunSchema,
  WorkerSchema,
} from "../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";

/** A service the dashboard watches: its name (also the identity it must present) and where it is. */
export interface KnownService {
  name: string;
  url: string;
}

const HEALTH_TIMEOUT_MS = 2_000;

/** grpc.health.v1 Check on every known service at once, and the client factory's breakers. */
export async function meshHealth(
  clients: ClientFactory,
  services: readonly KnownService[],
  options: CallOptions,
): Promise<GetMeshHealthResponse> {
  const checks = await Promise.all(
    services.map(async ({ name, url }) => {
      const started = performance.now();
      const health = { name, url, status: "UNREACHABLE", error: "" };
      try {
        const res = await clients
          .client(Health, url, name)
          .check({}, { ...options, timeoutMs: Math.min(options.timeoutMs ?? HEALTH_TIMEOUT_MS, HEALTH_TIMEOUT_MS) });
        health.status = HealthCheckResponse_ServingStatus[res.status] ?? String(res.status);
      } catch (err) {
        health.error = ConnectError.from(err).message;
      }
      return create(ServiceHealthSchema, {
        ...health,
        latency: durationFromMs(Math.round(performance.now() - started)),
      });
    }),
  );
  return create(GetMeshHealthResponseSchema, {
    services: checks,
    breakers: clients.breakers().map((b) =>
      create(BreakerStateSchema, {
        downstream: `${b.downstream}${b.procedure}`,
        state: b.state === "halfOpen" ? "half-open" : b.state,
      }),
    ),
  });
}

/**
 * The workers `agents` names now: a URL is one; a `dns:///` target is one per address it
 * resolves to (every replica behind a headless Service), or, unresolved, one listed with why.
 */
async function workerUrls(
  agents: readonly PeerTarget[],
  lookup: LookupAll,
): Promise<{ url: string; unresolved?: string }[]> {
  const lists = await Promise.all(
    agents.map(async (agent) => {
      if (agent.kind === "url") return [{ url: agent.origin }];
      try {
        const addresses = await lookup(agent.host);
        return addresses.map((address) => ({ url: endpointOrigin(agent.protocol, address, agent.port) }));
      } catch (err) {
        return [{ url: targetText(agent), unresolved: `cannot resolve ${agent.host}: ${(err as Error).message}` }];
      }
    }),
  );
  return lists.flat();
}

/** Every agent worker `agents` names, with its runs; one that cannot be reached is listed with its error. */
export async function listWorkers(
  clients: ClientFactory,
  agents: readonly PeerTarget[],
  options: CallOptions,
  lookup: LookupAll = systemLookup,
): Promise<Worker[]> {
  return Promise.all(
    (await workerUrls(agents, lookup)).map(async ({ url, unresolved }) => {
      if (unresolved) return create(WorkerSchema, { id: url, url, error: unresolved });
      try {
        const res = await clients.client(AgentService, url, "agent").listRuns({}, options);
        return create(WorkerSchema, {
          id: res.workerId,
          url,
          concurrency: res.concurrency,
          draining: res.draining,
          runs: res.runs.map((run) =>
            create(WorkerRunSchema, {
              taskId: run.taskId,
              attempt: run.attempt,
              runner: run.runner,
              ...(run.startTime && { startTime: run.startTime }),
              costUsd: run.costUsd,
            }),
          ),
        });
      } catch (err) {
        return create(WorkerSchema, { id: url, url, error: ConnectError.from(err).message });
      }
    }),
  );
}

/** Drains the worker whose id (or, unreachable, whose URL) is `id`. */
export async function drainWorker(
  clients: ClientFactory,
  agents: readonly PeerTarget[],
  id: string,
  options: CallOptions,
  lookup: LookupAll = systemLookup,
): Promise<number> {
  const workers = await listWorkers(clients, agents, options, lookup);
  const worker = workers.find((w) => w.id === id);
  if (!worker) throw new ConnectError(`no agent worker "${id}" among AGENT_URL`, Code.NotFound);
  const res = await clients.client(AgentService, worker.url, "agent").drain({}, options);
  return res.runsInProgress;
}
