import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ConfigError,
  type Env,
  envDuration,
  envHome,
  envHttpLimits,
  envInsecure,
  envInt,
  envList,
  envListen,
  envLogLevel,
  envPeer,
  envPort,
  envString,
  envUrl,
  type HttpLimits,
  type ListenConfig,
  type LogLevel,
  type PeerTarget,
  parsePeer,
} from "@hookmesh/kit";

/** Where the read model lives: a PostgreSQL server, or PGlite's files under HOOKMESH_HOME. */
export type DatabaseConfig = { kind: "postgres"; url: string } | { kind: "pglite"; dataDir: string };

/**
 * `host`/`port` (DASHBOARD_HOST, DASHBOARD_PORT) are the gRPC port, under the dashboard's
 * identity like every service; `httpHost`/`httpPort` the web UI and its browser API.
 */
export interface DashboardConfig extends ListenConfig {
  /** DASHBOARD_HTTP_HOST: loopback unless set, because the web port is the browser's door. */
  httpHost: string;
  httpPort: number;
  httpLimits: HttpLimits;
  /** DASHBOARD_PUBLIC_URL: the web address browsers use; sign-in links and the CSRF check are built on it. */
  publicUrl: string;
  /** Origins allowed to call the browser API besides the public URL's (DASHBOARD_ALLOWED_ORIGINS). */
  allowedOrigins: string[];
  /** The built web UI (DASHBOARD_WEB_DIR), `web/dist` in this package by default. */
  webDir: string;
  database: DatabaseConfig;
  tasksUrl: string;
  gatewayUrl: string;
  /**
   * AGENT_URL: the agent workers the dashboard lists and drains, comma-separated: each URL is
   * one worker, and each address a `dns:///` target resolves to is one (all the replicas behind
   * a headless Service or a Compose service name).
   */
  agents: PeerTarget[];
  githubUrl: string;
  slackUrl: string;
  jiraUrl: string;
  sentryUrl: string;
  /** DASHBOARD_TRACE_URL_TEMPLATE: a link to a trace, `{trace_id}` replaced; empty for none. */
  traceUrlTemplate: string;
  signInTtlMs: number;
  sessionTtlMs: number;
  /** How long the projector's lease lasts unless renewed; another replica takes over after it. */
  projectorLeaseMs: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
}

const packageDir = fileURLToPath(new URL("..", import.meta.url));

export function loadConfig(env: Env = process.env): DashboardConfig {
  const peers = {
    TASKS_URL: envPeer(env, "TASKS_URL", 50051),
    GATEWAY_URL: envPeer(env, "GATEWAY_URL", 50050),
    GITHUB_URL: envPeer(env, "GITHUB_URL", 50061),
    SLACK_URL: envPeer(env, "SLACK_URL", 50062),
    JIRA_URL: envPeer(env, "JIRA_URL", 50063),
    SENTRY_URL: envPeer(env, "SENTRY_URL", 50064),
  };
  // Checked like any peer (https under mTLS, loopback in cleartext), though never balanced.
  const agentPeer = envPeer(env, "AGENT_URL", 50052);
  const listen = envListen(env, "dashboard", 50070, { ...peers, AGENT_URL: agentPeer });
  const httpHost = envString(env, "DASHBOARD_HTTP_HOST", "127.0.0.1");
  const httpPort = envPort(env, "DASHBOARD_HTTP_PORT", 8070);
  const hostInUrl = httpHost === "0.0.0.0" || httpHost === "::" ? "127.0.0.1" : httpHost;
  const publicUrl = envUrl(
    env,
    "DASHBOARD_PUBLIC_URL",
    `http://${hostInUrl.includes(":") ? `[${hostInUrl}]` : hostInUrl}:${httpPort}`,
  );
  const traceUrlTemplate = envString(env, "DASHBOARD_TRACE_URL_TEMPLATE", "");
  if (traceUrlTemplate !== "" && !traceUrlTemplate.includes("{trace_id}")) {
    throw new ConfigError("DASHBOARD_TRACE_URL_TEMPLATE", "expected a URL with {trace_id} in it");
  }
  return {
    ...listen,
    httpHost,
    httpPort,
    httpLimits: envHttpLimits(env, "DASHBOARD_HTTP"),
    publicUrl,
    allowedOrigins: envList(env, "DASHBOARD_ALLOWED_ORIGINS").map((origin, i) =>
      originOf(`DASHBOARD_ALLOWED_ORIGINS[${i}]`, origin),
    ),
    webDir: envString(env, "DASHBOARD_WEB_DIR", join(packageDir, "web", "dist")),
    database: databaseConfig(env),
    tasksUrl: peers.TASKS_URL,
    gatewayUrl: peers.GATEWAY_URL,
    agents: parsePeer(agentPeer, envInsecure(env) ? "http:" : "https:"),
    githubUrl: peers.GITHUB_URL,
    slackUrl: peers.SLACK_URL,
    jiraUrl: peers.JIRA_URL,
    sentryUrl: peers.SENTRY_URL,
    traceUrlTemplate,
    signInTtlMs: envDuration(env, "DASHBOARD_SIGN_IN_TTL", "5m"),
    sessionTtlMs: envDuration(env, "DASHBOARD_SESSION_TTL", "12h"),
    projectorLeaseMs: envDuration(env, "DASHBOARD_PROJECTOR_LEASE", "15s"),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
  };
}

/** DASHBOARD_DATABASE_URL, else PGlite's files in `HOOKMESH_HOME/dashboard/pgdata`. */
function databaseConfig(env: Env): DatabaseConfig {
  const url = envString(env, "DASHBOARD_DATABASE_URL", "");
  if (url === "") return { kind: "pglite", dataDir: join(envHome(env), "dashboard", "pgdata") };
  return { kind: "postgres", url: envUrl(env, "DASHBOARD_DATABASE_URL", url, ["postgres:", "postgresql:"]) };
}

function originOf(variable: string, raw: string): string {
  return new URL(envUrl({ [variable]: raw }, variable, raw)).origin;
}
