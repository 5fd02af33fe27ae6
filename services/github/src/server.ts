import { createMeshServer, type HealthState, type Logger, type MeshServer, type SecurityOptions } from "@hookmesh/kit";
import { mapGitHubError } from "./errors.js";
import type { GitHubApi } from "./github-api.js";
import { routes } from "./routes.js";

export interface GitHubServerDeps extends SecurityOptions {
  api: GitHubApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
}

export function build(deps: GitHubServerDeps): MeshServer {
  return createMeshServer({
    routes: routes(deps.api),
    health: deps.health,
    logger: deps.logger,
    mapError: mapGitHubError,
    identity: deps.identity,
    tokens: deps.tokens,
  });
}
