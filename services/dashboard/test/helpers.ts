import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { type ClientFactory, type Env, ServingStatus } from "@hookmesh/kit";
import { memoryLogger, routerClientFactory } from "@hookmesh/kit/testing";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { AgentService } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import { DeliveryService } from "../../../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { type Route, RouteSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { type ComposedDashboard, composeDashboard } from "../src/compose.js";
import { loadConfig } from "../src/config.js";
import type { Database } from "../src/db.js";
import { FakeTasks } from "./fake-tasks.js";
import { task } from "./fixtures.js";

/** The mesh around the dashboard, in memory: tasks (with its change feed), routes, the gateway's deliveries, one agent. */
export class FakeMesh {
  readonly tasks = new FakeTasks();
  readonly routes = new Map<string, Route>();
  drained = false;
  tasksHealthy = true;

  clients(): ClientFactory {
    return routerClientFactory((router: ConnectRouter) => {
      this.tasks.routes(router);
      router.service(RouteService, {
        listRoutes: () => ({ routes: [...this.routes.values()] }),
        upsertRoute: (req) => {
          if (!req.route || !/^[a-z0-9_-]+$/.test(req.route.id)) {
            throw new ConnectError("route.id: letters, digits, - and _ only", Code.InvalidArgument);
          }
          this.routes.set(req.route.id, req.route);
          return { route: req.route };
        },
        deleteRoute: (req) => {
          if (!this.routes.delete(req.id)) throw new ConnectError(`no route ${req.id}`, Code.NotFound);
          return {};
        },
      });
      router.service(DeliveryService, {
        listDeliveries: () => ({
          deliveries: [
            { id: "del-1", route: "github", rawBody: new TextEncoder().encode("secret body"), taskId: "t1" },
          ],
          nextPageToken: "",
        }),
        redeliver: (req) => ({ delivery: { id: req.id, rawBody: new TextEncoder().encode("secret body") } }),
      });
      router.service(AgentService, {
        listRuns: () => ({
          workerId: "worker-1",
          concurrency: 2,
          draining: this.drained,
          runs: [{ taskId: "t1", attempt: 1, runner: "command" }],
        }),
        drain: () => {
          this.drained = true;
          return { runsInProgress: 1 };
        },
      });
      router.service(Health, {
        check: () => ({ status: this.tasksHealthy ? ServingStatus.SERVING : ServingStatus.NOT_SERVING }),
      });
    });
  }
}

export const route = (id: string) => create(RouteSchema, { id, provider: 1 });

/** A built UI: index.html and one hashed asset. */
export function webDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "dashboard-web-"));
  mkdirSync(join(dir, "assets"));
  writeFileSync(
    join(dir, "index.html"),
    "<!doctype html><title>hookmesh</title><script type=module src=/assets/app-1a2b.js></script>",
  );
  writeFileSync(join(dir, "assets", "app-1a2b.js"), "console.log('hookmesh')");
  writeFileSync(join(dir, "assets", "app-1a2b.css"), "body{}");
  return dir;
}

export interface Harness {
  dashboard: ComposedDashboard;
  mesh: FakeMesh;
  grpcUrl: string;
  webUrl: string;
  close(): Promise<void>;
}

/** The dashboard as `main` builds it, in cleartext on loopback, both ports on 0, against a fake mesh. */
export async function startDashboard(db: Database, env: Env = {}, mesh = new FakeMesh()): Promise<Harness> {
  const config = loadConfig({
    HOOKMESH_INSECURE: "1",
    HOOKMESH_HOME: mkdtempSync(join(tmpdir(), "dashboard-home-")),
    DASHBOARD_PORT: "0",
    DASHBOARD_HTTP_PORT: "0",
    DASHBOARD_WEB_DIR: webDir(),
    DASHBOARD_PROJECTOR_LEASE: "2s",
    SHUTDOWN_GRACE_MS: "500",
    ...env,
  });
  const dashboard = await composeDashboard(config, {
    logger: memoryLogger("dashboard").logger,
    clients: mesh.clients(),
    db,
    projectorBackoff: { initialMs: 10, maxMs: 100 },
    watchPollMs: 10_000,
  });
  const { grpc, web } = await dashboard.start();
  return {
    dashboard,
    mesh,
    grpcUrl: `http://127.0.0.1:${grpc.port}`,
    webUrl: `http://127.0.0.1:${web.port}`,
    close: () => dashboard.close(),
  };
}

export { task };
