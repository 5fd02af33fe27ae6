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
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { TOKEN_VARIABLE, type SentryConfig } from "./config.js";
import { SentryApi } from "./sentry-api.js";
import { build } from "./server.js";
import { sentryPolicy } from "./upstream.js";

export interface SentryDeps {
  logger: Logger;
  /** Where the auth token is read (and re-read on rotation): the environment the config came from. */
  env: Env;
  /** Timings of the calls to Sentry beyond the configured ones (backoff, waits, breaker): tests make them milliseconds. */
  upstream?: UpstreamTimings;
}

/** The Sentry service, built and not listening, and the parts tests look at. */
export interface SentryIntegration {
  server: MeshServer;
  api: SentryApi;
  calls: ProviderCalls;
  token: Credential;
  redis: Redis;
  /** Stops serving (within the shutdown grace), watching the token, the breaker and Redis. */
  close(): Promise<void>;
}

export async function composeSentry(config: SentryConfig, deps: SentryDeps): Promise<SentryIntegration> {
  const { logger, env } = deps;
  // Serving follows the Redis connection: without its store, a keyed comment cannot be made safely.
  const health = new HealthState([SentryService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const token = new Credential(TOKEN_VARIABLE, env, logger);
  const stopWatching = token.watch();
  const upstream = new UpstreamClient({ ...sentryPolicy, baseUrl: config.apiUrl, logger, ...config.upstream, ...deps.upstream });
  const calls = new ProviderCalls({
    provider: "Sentry",
    upstream,
    redis,
    keyPrefix: config.redisKeyPrefix,
    logger,
    dryRun: config.dryRun,
    missing: () => token.missing(),
  });
  const api = new SentryApi({ upstream, token, calls });
  const server = build({ api, health, logger, tls: config.tls });
  return {
    server,
    api,
    calls,
    token,
    redis,
    async close() {
      await server.close(config.shutdownGraceMs);
      stopWatching();
      upstream.shutdown();
      redis.disconnect();
    },
  };
}
