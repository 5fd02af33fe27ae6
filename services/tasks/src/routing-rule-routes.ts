import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { ErrorMapper } from "@hookmesh/kit";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { RouteNotFoundError, type RouteStore } from "./routing/route-store.js";
import { InvalidRouteError } from "./routing/validate.js";

export function routeServiceRoutes(store: RouteStore) {
  return (router: ConnectRouter) =>
    router.service(RouteService, {
      async listRoutes() {
        return { routes: await store.list() };
      },
      async getRoute(req) {
        return { route: await store.get(requireId(req.id)) };
      },
      async upsertRoute(req) {
        return { route: await store.upsert(req.route) };
      },
      async deleteRoute(req) {
        await store.delete(requireId(req.id));
        return {};
      },
    });
}

function requireId(id: string): string {
  if (id === "") throw new ConnectError("id: is required", Code.InvalidArgument);
  return id;
}

export const mapRouteError: ErrorMapper = (err) => {
  if (err instanceof InvalidRouteError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof RouteNotFoundError) return new ConnectError(err.message, Code.NotFound);
  return undefined;
};
