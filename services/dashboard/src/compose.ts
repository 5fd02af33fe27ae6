import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ClientFactory,
  createClientFactory,
  createMeshServer,
  createServiceMetrics,
  HealthState,
  type Logger,
  type MeshServer,
  openIdentity,
  type ServiceMetrics,
  ServingStatus,
  targetText,
} from "@hookmesh/kit";
import { DashboardService } from "../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { DashboardConfig } from "./config.js";
import { type Database, isDatabaseUnavailable, openDatabase } from "./db.js";
import { migrate } from "./migrations.js";
import { Notifier } from "./notifier.js";
import { Projector } from "./projector.js";
import { routes } from "./routes.js";
import { SignIns } from "./sign-in.js";
import { createWebServer, type Site, type WebServer } from "./web.js";

export interface DashboardDeps {
  logger: Logger;
  /** The clients of the mesh, calling as the dashboard; tests pass contract-level fakes. */
  clients?: ClientFactory;
  /** The dashboard's metrics; its own registry unless given. */
  metrics?: ServiceMetrics;
  /** An opened database (tests: a schema of their own); else the configured one, closed with the dashboard. */
  db?: Database;
  /** The projector's reconnect delays; tests shorten them. */
  projectorBackoff?: { initialMs: number; maxMs: number };
  /** How often a watch looks at the read model without a notice. */
  watchPollMs?: number;
  /** The clock of sign-ins and analytics defaults. */
  now?: () => number;
}

/** The dashboard, built and migrated, not yet listening nor projecting. */
export interface ComposedDashboard {
  grpc: MeshServer;
  web: WebServer;
  projector: Projector;
  db: Database;
  signIns: SignIns;
  /** The web address, with the real port once listening. */
  site: Site;
  /** Served on the admin port's `/metrics`. */
  metrics: ServiceMetrics;
  /** Listens on both ports, says SERVING and starts projecting. */
  start(): Promise<{ grpc: AddressInfo; web: AddressInfo }>;
  close(): Promise<void>;
}

export async function composeDashboard(config: DashboardConfig, deps: DashboardDeps): Promise<ComposedDashboard> {
  const { logger } = deps;
  const identity = openIdentity(config.identity, logger);
  const metrics = deps.metrics ?? createServiceMetrics("dashboard");
  const clients = deps.clients ?? createClientFactory({ logger, metrics, ...(identity && { identity }) });
  let db: Database | undefined;
  try {
    db = deps.db ?? (await openDatabase(config.database));
    await migrate(db);
  } catch (err) {
    if (!deps.db) await db?.close();
    clients.close();
    identity?.close();
    const where =
      config.database.kind === "postgres" ? "DASHBOARD_DATABASE_URL" : `PGlite in ${config.database.dataDir}`;
    throw new Error(`cannot open the read model's database (${where}): ${(err as Error).message}`, { cause: err });
  }
  const notifier = new Notifier();
  // Another replica's projector may be the one applying changes: its commits are heard here.
  const unlisten = await db.listen?.(notifier.channel, (taskId) => notifier.publish(taskId));
  const signIns = new SignIns(db, {
    signInTtlMs: config.signInTtlMs,
    sessionTtlMs: config.sessionTtlMs,
    ...(deps.now && { now: deps.now }),
  });
  const site: Site = { publicUrl: config.publicUrl };
  const dashboardRoutes = routes({
    db,
    notifier,
    signIns,
    clients,
    logger,
    tasksUrl: config.tasksUrl,
    gatewayUrl: config.gatewayUrl,
    agents: config.agents,
    services: [
      { name: "tasks", url: config.tasksUrl },
      { name: "gateway", url: config.gatewayUrl },
      { name: "github", url: config.githubUrl },
      { name: "slack", url: config.slackUrl },
      { name: "jira", url: config.jiraUrl },
      { name: "sentry", url: config.sentryUrl },
      ...config.agents.map((agent) => ({ name: "agent", url: targetText(agent) })),
    ],
    site,
    traceUrlTemplate: config.traceUrlTemplate,
    ...(deps.watchPollMs !== undefined && { watchPollMs: deps.watchPollMs }),
    ...(deps.now && { now: deps.now }),
  });
  const mapError = (err: unknown) =>
    isDatabaseUnavailable(err)
      ? new ConnectError("the dashboard's database is unavailable", Code.Unavailable, undefined, undefined, err)
      : undefined;
  const grpc = createMeshServer({
    routes: dashboardRoutes,
    health: new HealthState([DashboardService.typeName]),
    logger,
    mapError,
    metrics,
    identity,
    tokens: config.operatorTokens,
    limits: config.limits,
  });
  const web = createWebServer({
    routes: dashboardRoutes,
    mapError,
    signIns,
    logger,
    webDir: config.webDir,
    site,
    allowedOrigins: config.allowedOrigins,
    sessionTtlMs: config.sessionTtlMs,
    limits: config.httpLimits,
  });
  const projector = new Projector({
    db,
    tasks: clients.client(TaskService, config.tasksUrl, "tasks"),
    notifier,
    logger,
    holder: `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`,
    leaseMs: config.projectorLeaseMs,
    ...(deps.projectorBackoff && { backoff: deps.projectorBackoff }),
  });
  const database = db;
  return {
    grpc,
    web,
    projector,
    db,
    signIns,
    site,
    metrics,
    async start() {
      const grpcAddress = await grpc.listen(config.port, config.host);
      const webAddress = await web.listen(config.httpPort, config.httpHost);
      grpc.health.setAll(ServingStatus.SERVING);
      projector.start();
      return { grpc: grpcAddress, web: webAddress };
    },
    async close() {
      await projector.stop();
      await Promise.all([web.close(config.shutdownGraceMs), grpc.close(config.shutdownGraceMs)]);
      await unlisten?.();
      if (!deps.db) await database.close();
      clients.close();
      identity?.close();
    },
  };
}
