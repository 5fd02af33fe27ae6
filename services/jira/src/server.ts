import { createMeshServer, type HealthState, type Logger, type MeshServer, type SecurityOptions } from "@hookmesh/kit";
import { mapJiraError } from "./errors.js";
import type { JiraApi } from "./jira-api.js";
import { routes } from "./routes.js";

export interface JiraServerDeps extends SecurityOptions {
  api: JiraApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
}

export function build(deps: JiraServerDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.api),
    health: deps.health,
    logger: deps.logger,
    mapError: mapJiraError,
    identity: deps.identity,
    tokens: deps.tokens,
  });
}
