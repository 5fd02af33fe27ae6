import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADMIN_PORT_OFFSET, type Env, envInsecure, envPort, envString } from "@hookmesh/kit";
import { UsageError } from "./command.js";
import { SERVICES, type ServiceEntry } from "./services.js";

/**
 * How far apart a service's replicas listen: replica i's gRPC port is the service's + 100·i and
 * its admin port the admin port + 100·i, so that ten replicas of each service (50050 … 50970)
 * stay below the first admin port (51050). Edge and web ports (gateway 8080, dashboard 8070)
 * count up by one: 8080 … 8089 and 8070 … 8079.
 */
export const REPLICA_PORT_STEP = 100;
export const MAX_REPLICAS = 10;

/** The web port of the services that have one, by the variable that moves it. */
const HTTP_PORTS: Readonly<Record<string, { variable: string; port: number; what: string }>> = {
  gateway: { variable: "GATEWAY_HTTP_PORT", port: 8080, what: "edge" },
  dashboard: { variable: "DASHBOARD_HTTP_PORT", port: 8070, what: "web" },
};

/** `tasks=2,agent=3`, checked: each a known service, once, with 1 … 10 replicas; none when absent. */
export function parseReplicas(
  spec: string | undefined,
  services: readonly ServiceEntry[] = SERVICES,
): Map<string, number> {
  const counts = new Map<string, number>();
  if (spec === undefined) return counts;
  const items = spec.split(",").map((item) => item.trim());
  if (items.every((item) => item === "")) {
    throw new UsageError(`--replicas: expected name=N[,name=N…], e.g. tasks=2,agent=3`);
  }
  for (const item of items) {
    const match = /^([^=]+)=(.*)$/.exec(item);
    if (!match) throw new UsageError(`--replicas: "${item}" is not name=N, e.g. tasks=2`);
    const [, name = "", count = ""] = match;
    if (!services.some((s) => s.name === name)) {
      throw new UsageError(`--replicas: unknown service "${name}"; known: ${services.map((s) => s.name).join(", ")}`);
    }
    if (counts.has(name)) throw new UsageError(`--replicas: ${name} is given twice`);
    if (!/^\d+$/.test(count) || Number(count) < 1 || Number(count) > MAX_REPLICAS) {
      throw new UsageError(`--replicas: ${name}=${count}: N must be a whole number from 1 to ${MAX_REPLICAS}`);
    }
    counts.set(name, Number(count));
  }
  return counts;
}

/** One process of a service as `hookmesh start` runs it. */
export interface Replica {
  service: ServiceEntry;
  /** 0-based, among the service's replicas. */
  index: number;
  /** The service's name, with `-i` when it has more than one replica: its prefix in the output. */
  name: string;
  /** Where it answers gRPC, as its peers are told. */
  url: string;
  /** Its admin port's base URL; port 0 when the environment asks for a free one. */
  adminUrl: string;
  /** The gateway's webhook edge or the dashboard's web port. */
  httpUrl?: string;
  /** The ports behind those URLs, 0 for a free one. */
  ports: { grpc: number; admin: number; http?: number };
  /**
   * What this process gets over the supervisor's environment: its own ports (and the agent
   * worker's own directories) when its service has replicas, and, for every replicated service,
   * the list of its replicas' URLs in `<NAME>_URL`. Empty under `npm start`: one of each, as configured.
   */
  env: Record<string, string>;
}

/**
 * The processes `hookmesh start` runs: `counts` replicas of each of `services` (one unless
 * named), each on its own loopback ports, every peer of a replicated service given the list
 * of its replicas. Refuses what cannot work: replicas of a service on a free port (its peers
 * could not be told where it is), dashboard replicas on the embedded PGlite (one process's
 * files), replicas of a service that is not started, and two processes on one port.
 */
export function planReplicas(
  services: readonly ServiceEntry[],
  counts: ReadonlyMap<string, number>,
  env: Env,
): Replica[] {
  for (const name of counts.keys()) {
    if (!services.some((s) => s.name === name)) {
      throw new UsageError(
        `--replicas: ${name}=${counts.get(name)} names a service that is not started (${services.map((s) => s.name).join(", ")})`,
      );
    }
  }
  const scheme = envInsecure(env) ? "http" : "https";
  const replicas = services.flatMap((service) => {
    const count = counts.get(service.name) ?? 1;
    const prefix = service.name.toUpperCase();
    const host = urlHost(envString(env, `${prefix}_HOST`, "127.0.0.1"));
    const port = envPort(env, `${prefix}_PORT`, service.grpcPort);
    if (count > 1 && port === 0) {
      throw new UsageError(
        `--replicas: ${service.name}=${count} needs a fixed ${prefix}_PORT, not 0: its peers are told where each replica listens`,
      );
    }
    if (count > 1 && service.name === "dashboard" && !env.DASHBOARD_DATABASE_URL?.trim()) {
      throw new UsageError(
        `--replicas: dashboard=${count} needs DASHBOARD_DATABASE_URL: without it each dashboard keeps its read model in PGlite files that one process alone can open; set a PostgreSQL URL that the replicas share`,
      );
    }
    const adminVariable = `${prefix}_ADMIN_PORT`;
    const adminPort = envPort(env, adminVariable, port === 0 ? 0 : port + ADMIN_PORT_OFFSET);
    const http = HTTP_PORTS[service.name];
    const httpPort = http && envPort(env, http.variable, http.port);
    return Array.from({ length: count }, (_, index): Replica => {
      const step = (base: number, by: number) => (base === 0 ? 0 : base + by * index);
      const own: Record<string, string> = {};
      if (count > 1) {
        own[`${prefix}_PORT`] = String(step(port, REPLICA_PORT_STEP));
        own[adminVariable] = String(step(adminPort, REPLICA_PORT_STEP));
        if (http && httpPort !== undefined) own[http.variable] = String(step(httpPort, 1));
        if (service.name === "agent") Object.assign(own, agentReplicaEnv(env, index));
      }
      const ports = {
        grpc: step(port, REPLICA_PORT_STEP),
        admin: step(adminPort, REPLICA_PORT_STEP),
        http: httpPort === undefined ? undefined : step(httpPort, 1),
      };
      return {
        service,
        index,
        name: count > 1 ? `${service.name}-${index}` : service.name,
        url: `${scheme}://${host}:${ports.grpc}`,
        adminUrl: `http://${host}:${ports.admin}`,
        httpUrl: ports.http === undefined ? undefined : `http://${host}:${ports.http}`,
        ports,
        env: own,
      };
    });
  });
  refuseSharedPorts(replicas);
  const peerLists: Record<string, string> = {};
  for (const service of services) {
    const own = replicas.filter((r) => r.service === service);
    if (own.length > 1) peerLists[service.urlVariable] = own.map((r) => r.url).join(",");
  }
  for (const replica of replicas) replica.env = { ...peerLists, ...replica.env };
  return replicas;
}

/**
 * An agent worker's identity and directories, distinct per replica: each holds its leases
 * under its own id, and its repository mirrors are guarded against concurrent fetches within
 * its process only.
 */
function agentReplicaEnv(env: Env, index: number): Record<string, string> {
  const workdir = envString(env, "AGENT_WORKDIR", join(tmpdir(), "hookmesh-runs"));
  const own: Record<string, string> = { AGENT_WORKDIR: join(workdir, `agent-${index}`) };
  const id = envString(env, "AGENT_ID", "");
  if (id !== "") own.AGENT_ID = `${id}-${index}`;
  const cache = envString(env, "AGENT_REPO_CACHE", "");
  if (cache !== "") own.AGENT_REPO_CACHE = join(cache, `agent-${index}`);
  return own;
}

/** A bind address as a URL names it: a wildcard bind is reached on loopback, IPv6 in brackets. */
function urlHost(host: string): string {
  const reachable = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return reachable.includes(":") ? `[${reachable}]` : reachable;
}

function refuseSharedPorts(replicas: readonly Replica[]): void {
  const owners = new Map<number, string>();
  for (const replica of replicas) {
    const ports = [
      [replica.ports.grpc, "gRPC"],
      [replica.ports.admin, "admin"],
      [replica.ports.http, HTTP_PORTS[replica.service.name]?.what],
    ] as const;
    for (const [port, what] of ports) {
      if (port === undefined || port === 0) continue;
      const owner = `${replica.name}'s ${what} port`;
      if (port > 65535) throw new UsageError(`--replicas: ${owner} would be ${port}, past 65535; lower its base port`);
      const other = owners.get(port);
      if (other !== undefined) throw new UsageError(`--replicas: ${owner} ${port} is also ${other}; move one`);
      owners.set(port, owner);
    }
  }
}

/** The replicas' addresses, one line each, as `hookmesh start` prints them before it starts them. */
export function formatReplicas(replicas: readonly Replica[]): string[] {
  const width = Math.max(...replicas.map((r) => r.name.length));
  const address = (url: string, port: number) => (port === 0 ? "(a free port)" : url);
  return replicas.map((r) => {
    const http = r.httpUrl ? `  ${HTTP_PORTS[r.service.name]?.what} ${address(r.httpUrl, r.ports.http!)}` : "";
    return `${r.name.padEnd(width)}  grpc ${r.url}  admin ${address(r.adminUrl, r.ports.admin)}${http}`;
  });
}
