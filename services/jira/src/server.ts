import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import { mapJiraError } from "./errors.js";
import type { JiraApi } from "./jira-api.js";
import { routes } from "./routes.js";

export interface JiraServerDeps {
  api: JiraApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: JiraServerDeps): MeshServer {
  return createMeshServer({ routes: routes(deps.api), health: deps.health, logger: deps.logger, mapError: mapJiraError, tls: deps.tls });
}
