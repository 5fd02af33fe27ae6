import type { Env } from "../config.js";
import { HealthState, ServingStatus } from "../health.js";
import type { ErrorMapper } from "../interceptors.js";
import type { Logger } from "../logger.js";
import { providerMetrics } from "../metrics/provider.js";
import { createServiceMetrics, type ServiceMetrics } from "../metrics/registry.js";
import { openIdentityAndRedis } from "../process.js";
import type { RedisClient } from "../redis.js";
import { createMeshServer, type MeshServer, type RoutesFn } from "../serve.js";
import { type ProviderPolicy, UpstreamClient, type UpstreamTimings } from "./client.js";
import type { IntegrationConfig } from "./config.js";
import type { Credential, MissingCredentialError } from "./credential.js";
import { mapUpstreamError } from "./errors.js";
import { ProviderCalls } from "./provider-calls.js";

/** What every integration service's compose function takes. */
export interface IntegrationDeps {
  logger: Logger;
  /** Where credentials are read (and re-read on rotation): the environment the config came from. */
  env: Env;
  /** Timings of the calls to the provider beyond the configured ones (backoff, waits, breaker): tests make them milliseconds. */
  upstream?: UpstreamTimings;
  /** The service's metrics; its own registry unless given. */
  metrics?: ServiceMetrics;
}

/** What every integration service's compose function returns, beside its own domain objects: built, not listening. */
export interface Integration {
  server: MeshServer;
  /** Served on the admin port's `/metrics`. */
  metrics: ServiceMetrics;
  calls: ProviderCalls;
  redis: RedisClient;
  /** Stops serving (within the shutdown grace), watching credentials, the breaker, and Redis. */
  close(): Promise<void>;
}

export interface IntegrationBaseOptions {
  /** The service's full name, for health: `SlackService.typeName`. */
  service: string;
  policy: ProviderPolicy;
  /** The provider's API root. */
  baseUrl: string;
  /** The service's credentials, watched for rotation until close. */
  credentials: Credential[];
  /** What keeps calls from reaching the provider (see ProviderCallsOptions.missing); by default, the first credential not set. */
  missing?(): MissingCredentialError | undefined;
}

/** The parts every integration service is built on. */
export interface IntegrationBase {
  /** Follows the Redis connection: without the idempotency store, a keyed call cannot be made safely. */
  health: HealthState;
  /** The service's metrics: the RPCs it serves and its calls to the provider. */
  metrics: ServiceMetrics;
  redis: RedisClient;
  /** The client to the provider, with the configured timings. */
  upstream: UpstreamClient;
  calls: ProviderCalls;
  /**
   * The service's server: its RPC routes beside health and reflection, under its identity and
   * the contracts' access policy, with its errors mapped by `mapError` (by default only the
   * errors every integration service shares); with the parts above, what the service's compose
   * function returns, beside its domain objects. Its `close` closes the server within the
   * shutdown grace, then stops watching the credentials and the identity, the breaker and Redis.
   */
  serve(routes: RoutesFn, mapError?: ErrorMapper): Integration;
}

/**
 * Connects an integration service's Redis and builds what every such service has the same way:
 * its health, the client to its provider and ProviderCalls, and the server around its routes.
 * The service adds its domain objects.
 */
export async function connectIntegration(
  config: IntegrationConfig,
  deps: IntegrationDeps,
  options: IntegrationBaseOptions,
): Promise<IntegrationBase> {
  const { logger } = deps;
  const health = new HealthState([options.service]);
  const { identity, redis } = await openIdentityAndRedis(config, logger, (ready) =>
    health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  );
  const stopWatching = options.credentials.map((credential) => credential.watch());
  const metrics = deps.metrics ?? createServiceMetrics(options.policy.name);
  const upstream = new UpstreamClient({
    ...options.policy,
    baseUrl: options.baseUrl,
    logger,
    metrics: providerMetrics(metrics.registry),
    ...config.upstream,
    ...deps.upstream,
  });
  const calls = new ProviderCalls({
    upstream,
    redis,
    keyPrefix: config.redis.keyPrefix,
    logger,
    dryRun: config.dryRun,
    missing:
      options.missing ??
      (() => options.credentials.map((credential) => credential.missing()).find((missing) => missing !== undefined)),
  });
  return {
    health,
    metrics,
    redis,
    upstream,
    calls,
    serve(routes, mapError = mapUpstreamError) {
      const server = createMeshServer({
        routes,
        health,
        logger,
        mapError,
        ...(identity && { identity }),
        tokens: config.operatorTokens,
        limits: config.limits,
        metrics,
      });
      return {
        server,
        metrics,
        calls,
        redis,
        async close() {
          await server.close(config.shutdownGraceMs);
          for (const stop of stopWatching) stop();
          identity?.close();
          upstream.shutdown();
          redis.disconnect();
        },
      };
    },
  };
}
