import { connectRedis, Credential, HealthState, IdempotencyStore, runMain, ServingStatus } from "@hookmesh/kit";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { loadConfig, TOKEN_VARIABLE } from "./config.js";
import { SentryApi } from "./sentry-api.js";
import { build } from "./server.js";
import { sentryUpstream } from "./upstream.js";


await runMain("sentry", loadConfig, async (config, logger) => {
  // Serving follows the Redis connection: without it, a keyed comment cannot be made safely.
  const health = new HealthState([SentryService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const token = new Credential(TOKEN_VARIABLE, process.env, logger);
  const stopWatching = token.watch();
  const upstream = sentryUpstream(config.apiUrl, logger);
  const api = new SentryApi({
    upstream,
    token,
    idempotency: new IdempotencyStore(redis, { keyPrefix: config.redisKeyPrefix, ttlMs: config.idempotencyTtlMs, lockMs: config.idempotencyLockMs }),
    dryRun: config.dryRun,
    logger,
  });
  const server = build({ api, health, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  if (!token.configured) {
    if (config.dryRun) logger.warn(`${TOKEN_VARIABLE} is not set: dry run, requests are answered but not sent to Sentry`);
    else logger.warn(`${TOKEN_VARIABLE} is not set: calls fail with FailedPrecondition until it is (or set HOOKMESH_DRY_RUN=1)`);
  }
  logger.info({ apiUrl: config.apiUrl, dryRun: config.dryRun && !token.configured }, "calling Sentry");
  return {
    async stop() {
      await server.close(config.shutdownGraceMs);
      stopWatching();
      upstream.shutdown();
      redis.disconnect();
    },
  };
});
