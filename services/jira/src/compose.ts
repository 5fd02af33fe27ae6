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
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { JiraAuth } from "./auth.js";
import { TOKEN_VARIABLES, type JiraConfig } from "./config.js";
import { DRY_RUN_BASE_URL, JiraApi } from "./jira-api.js";
import { build } from "./server.js";
import { jiraPolicy } from "./upstream.js";

export interface JiraDeps {
  logger: Logger;
  /** Where the token is read (and re-read on rotation): the environment the config came from. */
  env: Env;
  /** Timings of the calls to Jira beyond the configured ones (backoff, waits, breaker): tests make them milliseconds. */
  upstream?: UpstreamTimings;
}

/** The Jira service, built and not listening, and the parts tests look at. */
export interface JiraIntegration {
  server: MeshServer;
  api: JiraApi;
  calls: ProviderCalls;
  /** The credential in use; undefined when none is configured. */
  token: Credential | undefined;
  redis: Redis;
  /** Stops serving (within the shutdown grace), watching the token, the breaker and Redis. */
  close(): Promise<void>;
}

export async function composeJira(config: JiraConfig, deps: JiraDeps): Promise<JiraIntegration> {
  const { logger, env } = deps;
  // Serving follows the Redis connection: without the idempotency store, a retried call could comment twice.
  const health = new HealthState([JiraService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const token = config.auth === "none" ? undefined : new Credential(TOKEN_VARIABLES[config.auth], env, logger);
  const stopWatching = token?.watch();
  const auth = new JiraAuth(config, token);
  const upstream = new UpstreamClient({ ...jiraPolicy, baseUrl: config.baseUrl ?? DRY_RUN_BASE_URL, logger, ...config.upstream, ...deps.upstream });
  const calls = new ProviderCalls({
    provider: "Jira",
    upstream,
    redis,
    keyPrefix: config.redisKeyPrefix,
    logger,
    dryRun: config.dryRun,
    missing: () => auth.missing(),
  });
  const api = new JiraApi({ upstream, auth, calls, apiVersion: config.apiVersion });
  const server = build({ api, health, logger, tls: config.tls });
  return {
    server,
    api,
    calls,
    token,
    redis,
    async close() {
      await server.close(config.shutdownGraceMs);
      stopWatching?.();
      upstream.shutdown();
      redis.disconnect();
    },
  };
}
