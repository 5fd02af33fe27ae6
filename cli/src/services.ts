import { fileURLToPath } from "node:url";
import { type Env, envInsecure, envPeer, parsePeer, targetUrl } from "@hookmesh/kit";

/** A service of the mesh as the CLI knows it: where its entry point is and where it listens. */
export interface ServiceEntry {
  name: string;
  /** The entry point: TypeScript run with tsx, or the compiled JavaScript run with Node. */
  entry: string;
  /** Default gRPC port (ARCHITECTURE.md); the service's own config can override it. */
  grpcPort: number;
  /** The variable that points the CLI (and peers) at a service running elsewhere. */
  urlVariable: string;
  /** The default prefix of the service's Redis keys; absent for a service that keeps no state. */
  redisKeyPrefix?: string;
  /** Provider credentials and webhook secrets that only this service is given (each also as `_FILE`). */
  credentials?: readonly string[];
}

// Compiled (`npm run build`), this module is JavaScript in dist/, beside the services' compiled
// entry points, which `hookmesh start` then runs with plain Node instead of tsx.
const compiled = import.meta.url.endsWith(".js");
const root = (path: string) =>
  fileURLToPath(new URL(`../../${compiled ? path.replace(/\.ts$/, ".js") : path}`, import.meta.url));

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
    credentials: ["GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY"],
  },
  {
    name: "slack",
    entry: root("services/slack/src/main.ts"),
    grpcPort: 50062,
    urlVariable: "SLACK_URL",
    redisKeyPrefix: "hookmesh:slack:",
    credentials: ["SLACK_BOT_TOKEN"],
  },
  {
    name: "jira",
    entry: root("services/jira/src/main.ts"),
    grpcPort: 50063,
    urlVariable: "JIRA_URL",
    redisKeyPrefix: "hookmesh:jira:",
    credentials: ["JIRA_API_TOKEN", "JIRA_BEARER_TOKEN"],
  },
  {
    name: "sentry",
    entry: root("services/sentry/src/main.ts"),
    grpcPort: 50064,
    urlVariable: "SENTRY_URL",
    redisKeyPrefix: "hookmesh:sentry:",
    credentials: ["SENTRY_AUTH_TOKEN"],
  },
  { name: "agent", entry: root("services/agent/src/main.ts"), grpcPort: 50052, urlVariable: "AGENT_URL" },
  {
    name: "gateway",
    entry: root("gateway/src/main.ts"),
    grpcPort: 50050,
    urlVariable: "GATEWAY_URL",
    redisKeyPrefix: "hookmesh:gateway:",
    credentials: ["GITHUB_WEBHOOK_SECRET", "SLACK_SIGNING_SECRET", "JIRA_WEBHOOK_SECRET", "SENTRY_CLIENT_SECRET"],
  },
  {
    name: "dashboard",
    entry: root("services/dashboard/src/main.ts"),
    grpcPort: 50070,
    urlVariable: "DASHBOARD_URL",
    // Its database's URL may hold a password.
    credentials: ["DASHBOARD_DATABASE_URL"],
  },
];

/**
 * The environment `hookmesh start` gives a service: its own, without the secrets of the
 * others: provider credentials and webhook secrets, Redis passwords and TLS keys belong to
 * their service only. So the agent worker, whose runs come from strangers, holds none of them.
 */
export function serviceEnv(target: ServiceEntry, env: Env, services: readonly ServiceEntry[] = SERVICES): Env {
  const own = new Set(secretsOf(target));
  const result: Record<string, string | undefined> = { ...env };
  for (const other of services) {
    for (const name of secretsOf(other)) if (!own.has(name)) delete result[name];
  }
  return result;
}

function secretsOf(service: ServiceEntry): string[] {
  const prefix = service.name.toUpperCase();
  return [
    ...(service.credentials ?? []).flatMap((name) => [name, `${name}_FILE`]),
    `${prefix}_REDIS_PASSWORD`,
    `${prefix}_REDIS_PASSWORD_FILE`,
    `${prefix}_TLS_KEY_FILE`,
  ];
}

/**
 * Where the CLI reaches a service: its `<NAME>_URL`, or its default port on loopback (https
 * unless HOOKMESH_INSECURE=1). Of a list of replicas, the first target: an operator's command
 * (status, drain, a lookup) asks one of them.
 */
export function serviceUrl(service: ServiceEntry, env: Env): string {
  const peer = envPeer(env, service.urlVariable, service.grpcPort);
  return targetUrl(parsePeer(peer, envInsecure(env) ? "http:" : "https:")[0]!);
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
