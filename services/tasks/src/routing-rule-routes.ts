import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { ErrorMapper } from "@hookmesh/kit";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { RouteNotFoundError, type RoutingRuleStore } from "./routing/routing-rule-store.js";
import { InvalidRouteError } from "./routing/validate.js";

/** RouteService: the routing rules, as operators (and `hookmesh routes`) edit them. */
export function routeServiceRoutes(routingRules: RoutingRuleStore) {
  return (router: ConnectRouter) =>
    router.service(RouteService, {
      async listRoutes() {
        return { routes: await routingRules.list() };
      },
      async getRoute(req) {
        return { route: await routingRules.get(requireId(req.id)) };
      },
      async upsertRoute(req) {
        return { route: await routingRules.upsert(req.route) };
      },
      async deleteRoute(req) {
        await routingRules.delete(requireId(req.id));
        return {};
      },
    });
}

function requireId(id: string): string {
  if (id === "") throw new ConnectError("id: is required", Code.InvalidArgument);
  return id;
}

export const mapRoutingRuleError: ErrorMapper = (err) => {
  if (err instanceof InvalidRouteError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof RouteNotFoundError) return new ConnectError(err.message, Code.NotFound);
  return undefined;
};
