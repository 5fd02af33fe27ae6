import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  createLimitedHttpServer,
  createMeshServer,
  DEFAULT_HTTP_LIMITS,
  type ErrorMapper,
  HealthState,
  type HttpLimits,
  type Logger,
  listenHttp,
  type MeshServer,
  mapStoreError,
  type SecurityOptions,
  type ServiceMetrics,
  ServingStatus,
} from "@hookmesh/kit";
import { CustomRouteService } from "../../gen/hookmesh/gateway/v1/custom_route_service_pb.js";
import { DeliveryService } from "../../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import type { CustomRouteStore } from "./custom/route-store.js";
import { customRouteServiceRoutes, mapCustomRouteError } from "./custom/routes.js";
import type { DeliveryLog } from "./delivery-log.js";
import { deliveryServiceRoutes, mapDeliveryError } from "./delivery-routes.js";
import { httpEndpoints } from "./http-endpoints.js";
import type { WebhookPipeline } from "./pipeline.js";

export interface ServerDeps extends SecurityOptions {
  pipeline: WebhookPipeline;
  deliveries: DeliveryLog;
  customWebhooks: CustomRouteStore;
  /** True when the gateway can make deliveries durable right now. */
  ready: (signal: AbortSignal) => Promise<boolean>;
  /** What any one client may hold on the webhook edge (`GATEWAY_HTTP_*`); the defaults unless given. */
  httpLimits?: HttpLimits;
  logger: Logger;
  /** Where the RPCs served are counted. */
  metrics?: ServiceMetrics;
}

export interface Gateway {
  /** The webhook edge (HTTP/1.1). */
  http: http.Server;
  /** The gRPC port: delivery log, custom webhooks, health and reflection. */
  grpc: MeshServer;
  listen(httpPort: number, grpcPort: number, host?: string): Promise<{ http: AddressInfo; grpc: AddressInfo }>;
  close(graceMs?: number): Promise<void>;
}

/** Every domain error the gateway's RPCs can end in, as the wire error callers see. */
export const mapGatewayError: ErrorMapper = (err) =>
  mapDeliveryError(err) ?? mapCustomRouteError(err) ?? mapStoreError(err);

export function build(deps: ServerDeps): Gateway {
  const { pipeline, deliveries, customWebhooks } = deps;
  const handler = httpEndpoints({ pipeline, ready: deps.ready, logger: deps.logger });
  const httpLimits = deps.httpLimits ?? DEFAULT_HTTP_LIMITS;
  const server = createLimitedHttpServer(httpLimits, deps.logger, (req, res) => void handler(req, res));
  const grpc = createMeshServer({
    routes: (router: ConnectRouter) => {
      deliveryServiceRoutes(deliveries, pipeline)(router);
      customRouteServiceRoutes(customWebhooks)(router);
    },
    health: new HealthState([DeliveryService.typeName, CustomRouteService.typeName]),
    logger: deps.logger,
    mapError: mapGatewayError,
    identity: deps.identity,
    tokens: deps.tokens,
    limits: deps.limits,
    ...(deps.metrics && { metrics: deps.metrics }),
  });
  return {
    http: server,
    grpc,
    async listen(httpPort, grpcPort, host = "127.0.0.1") {
      const httpAddress = await listenHttp(server, httpPort, host);
      const grpcAddress = await grpc.listen(grpcPort, host);
      grpc.health.setAll(ServingStatus.SERVING);
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
