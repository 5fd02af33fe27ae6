import { fileURLToPath } from "node:url";
import { type Env, envPeerUrl } from "@hookmesh/kit";

/** A service of the mesh as the CLI knows it: where its entry point is and where it listens. */
export interface ServiceEntry {
  name: string;
  /** The entry point, run with tsx. */
  entry: string;
  /** Default gRPC port (ARCHITECTURE.md); the service's own config can override it. */
  grpcPort: number;
  /** The variable that points the CLI (and peers) at a service running elsewhere. */
  urlVariable: string;
  /** The default prefix of the service's Redis keys; absent for a service that keeps no state. */
  redisKeyPrefix?: string;
}

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** Every service that exists, in start order. */
export const SERVICES: readonly ServiceEntry[] = [
  {
    name: "tasks",
    entry: root("services/tasks/src/main.ts"),
    grpcPort: 50051,
    urlVariable: "TASKS_URL",
    redisKeyPrefix: "hookmesh:tasks:",
  },
  {
    name: "github",
    entry: root("services/github/src/main.ts"),
    grpcPort: 50061,
    urlVariable: "GITHUB_URL",
    redisKeyPrefix: "hookmesh:github:",
  },
  {
    name: "slack",
    entry: root("services/slack/src/main.ts"),
    grpcPort: 50062,
    urlVariable: "SLACK_URL",
    redisKeyPrefix: "hookmesh:slack:",
  },
  {
    name: "jira",
    entry: root("services/jira/src/main.ts"),
    grpcPort: 50063,
    urlVariable: "JIRA_URL",
    redisKeyPrefix: "hookmesh:jira:",
  },
  {
    name: "sentry",
    entry: root("services/sentry/src/main.ts"),
    grpcPort: 50064,
    urlVariable: "SENTRY_URL",
    redisKeyPrefix: "hookmesh:sentry:",
  },
  { name: "agent", entry: root("services/agent/src/main.ts"), grpcPort: 50052, urlVariable: "AGENT_URL" },
  {
    name: "gateway",
    entry: root("gateway/src/main.ts"),
    grpcPort: 50050,
    urlVariable: "GATEWAY_URL",
    redisKeyPrefix: "hookmesh:gateway:",
  },
];

/** Where a service is: its `<NAME>_URL`, or its default port on loopback (https unless HOOKMESH_INSECURE=1). */
export function serviceUrl(service: ServiceEntry, env: Env): string {
  return envPeerUrl(env, service.urlVariable, service.grpcPort);
}

/** The service named `name`, which must exist. */
export function service(name: string): ServiceEntry {
  const found = SERVICES.find((s) => s.name === name);
  if (found === undefined) throw new Error(`no service named ${name}`);
  return found;
}

/** The named services, or all of them; unknown names are an error that lists the known ones. */
export function selectServices(names: readonly string[]): ServiceEntry[] {
  if (names.length === 0) return [...SERVICES];
  const unknown = names.filter((name) => !SERVICES.some((s) => s.name === name));
  if (unknown.length > 0) {
    throw new Error(`unknown service ${unknown.join(", ")}; known: ${SERVICES.map((s) => s.name).join(", ")}`);
  }
  return SERVICES.filter((s) => names.includes(s.name));
}
