import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { ErrorMapper } from "@hookmesh/kit";
import { CustomRouteService } from "../../../gen/hookmesh/gateway/v1/custom_route_service_pb.js";
import { CustomRouteConflictError, CustomRouteNotFoundError } from "./errors.js";
import type { CustomRouteStore } from "./route-store.js";
import { InvalidCustomRouteError } from "./validate.js";

/** `CustomRouteService` over the store; every route it returns has its secret stripped. */
export function customRouteServiceRoutes(store: CustomRouteStore) {
  return (router: ConnectRouter) =>
    router.service(CustomRouteService, {
      async listCustomRoutes() {
        return { routes: await store.list() };
      },
      async upsertCustomRoute(req) {
        return { route: await store.upsert(req.route) };
      },
      async deleteCustomRoute(req) {
        if (req.name === "") throw new ConnectError("name: is required", Code.InvalidArgument);
        await store.delete(req.name);
        return {};
      },
    });
}

/** The wire errors of the store's domain errors; none of their messages holds a secret. */
export const mapCustomRouteError: ErrorMapper = (err) => {
  if (err instanceof InvalidCustomRouteError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof CustomRouteNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof CustomRouteConflictError) return new ConnectError(err.message, Code.Aborted);
  return undefined;
};
