import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createMeshServer, HealthState, ServingStatus, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import { GitHubWebhook } from "./github/webhook.js";
import { httpRoutes } from "./http-routes.js";
import type { Intake } from "./intake.js";

export interface GatewayDeps {
  intake: Intake;
  github: { secrets: readonly string[]; maxBodyBytes: number };
  ready: (signal: AbortSignal) => Promise<boolean>;
  logger: Logger;
  tls?: TlsOptions;
}

export interface Gateway {
  /** The webhook edge (HTTP/1.1). */
  http: http.Server;
  /** The gRPC port: health and reflection. */
  grpc: MeshServer;
  listen(httpPort: number, grpcPort: number, host?: string): Promise<{ http: AddressInfo; grpc: AddressInfo }>;
  close(graceMs?: number): Promise<void>;
}

export function build(deps: GatewayDeps): Gateway {
  const handler = httpRoutes({ github: new GitHubWebhook(deps.intake, deps.github), ready: deps.ready, logger: deps.logger });
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 60_000 }, (req, res) => void handler(req, res));
  const grpc = createMeshServer({ routes: () => {}, health: new HealthState([]), logger: deps.logger, tls: deps.tls });
  return {
    http: server,
    grpc,
    async listen(httpPort, grpcPort, host = "0.0.0.0") {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(httpPort, host, () => resolve());
      });
      const grpcAddress = await grpc.listen(grpcPort, host);
      grpc.health.set("", ServingStatus.SERVING);
      const httpAddress = server.address() as AddressInfo;
      deps.logger.info({ port: httpAddress.port }, "webhook edge listening");
      return { http: httpAddress, grpc: grpcAddress };
    },
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      await Promise.all([closed, grpc.close(graceMs)]);
      clearTimeout(force);
    },
  };
}
