import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import type { GitHubApi } from "./github-api.js";
import { mapGitHubError, routes } from "./routes.js";

export interface GitHubDeps {
  api: GitHubApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: GitHubDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.api),
    health: deps.health,
    logger: deps.logger,
    mapError: mapGitHubError,
    tls: deps.tls,
  });
}
