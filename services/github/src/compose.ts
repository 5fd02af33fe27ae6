import type { Redis } from "ioredis";
import {
  connectRedis,
  Credential,
  HealthState,
  ProviderCalls,
  ServingStatus,
  UpstreamClient,
  type Env,
  type Logger,
  type MeshServer,
  type UpstreamTimings,
} from "@hookmesh/kit";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { GitHubAuth } from "./auth.js";
import { APP_KEY_VARIABLE, TOKEN_VARIABLE, type GitHubConfig } from "./config.js";
import { GitHubApi } from "./github-api.js";
import { build } from "./server.js";
import { githubPolicy } from "./upstream.js";

export interface GitHubDeps {
  logger: Logger;
  /** Where the credentials are read (and re-read on rotation): the environment the config came from. */
  env: Env;
  /** Timings of the calls to GitHub beyond the configured ones (backoff, waits, breaker): tests make them milliseconds. */
  upstream?: UpstreamTimings;
}

/** The GitHub service, built and not listening, and the parts tests look at. */
export interface GitHubIntegration {
  server: MeshServer;
  api: GitHubApi;
  auth: GitHubAuth;
  calls: ProviderCalls;
  token: Credential;
  privateKey: Credential;
  redis: Redis;
  /** Stops serving (within the shutdown grace), watching credentials, the breaker and Redis. */
  close(): Promise<void>;
}

export async function composeGitHub(config: GitHubConfig, deps: GitHubDeps): Promise<GitHubIntegration> {
  const { logger, env } = deps;
  // Serving follows the Redis connection: without it, a keyed comment cannot be made safely.
  const health = new HealthState([GitHubService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const token = new Credential(TOKEN_VARIABLE, env, logger);
  const privateKey = new Credential(APP_KEY_VARIABLE, env, logger);
  const stopWatching = [token.watch(), privateKey.watch()];
  const upstream = new UpstreamClient({ ...githubPolicy, baseUrl: config.apiUrl, logger, ...config.upstream, ...deps.upstream });
  const auth = new GitHubAuth({ upstream, token, ...(config.appId !== undefined && { app: { id: config.appId, privateKey } }), logger });
  const calls = new ProviderCalls({
    provider: "GitHub",
    upstream,
    redis,
    keyPrefix: config.redisKeyPrefix,
    logger,
    dryRun: config.dryRun,
    missing: () => auth.missing(),
  });
  const api = new GitHubApi({ upstream, auth, calls, logger });
  const server = build({ api, health, logger, tls: config.tls });
  return {
    server,
    api,
    auth,
    calls,
    token,
    privateKey,
    redis,
    async close() {
      await server.close(config.shutdownGraceMs);
      for (const stop of stopWatching) stop();
      upstream.shutdown();
      redis.disconnect();
    },
  };
}
