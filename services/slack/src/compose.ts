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
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { TOKEN_VARIABLE, type SlackConfig } from "./config.js";
import { SlackMessages } from "./messages.js";
import { build } from "./server.js";
import { slackPolicy } from "./upstream.js";

export interface SlackDeps {
  logger: Logger;
  /** Where the bot token is read (and re-read on rotation): the environment the config came from. */
  env: Env;
  /** Timings of the calls to Slack beyond the configured ones (backoff, waits, breaker): tests make them milliseconds. */
  upstream?: UpstreamTimings;
}

/** The Slack service, built and not listening, and the parts tests look at. */
export interface SlackIntegration {
  server: MeshServer;
  slack: SlackMessages;
  calls: ProviderCalls;
  token: Credential;
  redis: Redis;
  /** Stops serving (within the shutdown grace), watching the token, the breaker and Redis. */
  close(): Promise<void>;
}

export async function composeSlack(config: SlackConfig, deps: SlackDeps): Promise<SlackIntegration> {
  const { logger, env } = deps;
  // Serving follows the Redis connection: without its store, a keyed post could post twice.
  const health = new HealthState([SlackService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const token = new Credential(TOKEN_VARIABLE, env, logger);
  const stopWatching = token.watch();
  const upstream = new UpstreamClient({ ...slackPolicy, baseUrl: config.apiUrl, logger, ...config.upstream, ...deps.upstream });
  const calls = new ProviderCalls({
    provider: "Slack",
    upstream,
    redis,
    keyPrefix: config.redisKeyPrefix,
    logger,
    dryRun: config.dryRun,
    missing: () => token.missing(),
  });
  const slack = new SlackMessages({ upstream, token, calls });
  const server = build({ slack, health, logger, tls: config.tls });
  return {
    server,
    slack,
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
