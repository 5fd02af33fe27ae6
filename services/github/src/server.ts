import { createMeshServer, type HealthState, type Logger, type MeshServer, type TlsOptions } from "@hookmesh/kit";
import { mapGitHubError } from "./errors.js";
import type { GitHubApi } from "./github-api.js";
import { routes } from "./routes.js";

export interface GitHubServerDeps {
  api: GitHubApi;
  /** Readiness, kept by whoever watches the Redis connection. */
  health: HealthState;
  logger: Logger;
  tls?: TlsOptions;
}

export function build(deps: GitHubServerDeps): MeshServer {
  return createMeshServer({ routes: routes(deps.api), health: deps.health, logger: deps.logger, mapError: mapGitHubError, tls: deps.tls });
}
