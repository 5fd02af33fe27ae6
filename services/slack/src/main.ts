import { connectRedis, Credential, HealthState, IdempotencyStore, runMain, ServingStatus } from "@hookmesh/kit";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { loadConfig, TOKEN_VARIABLE } from "./config.js";
import { SlackMessages } from "./messages.js";
import { build } from "./server.js";
import { slackUpstream } from "./upstream.js";


await runMain("slack", loadConfig, async (config, logger) => {
  // Serving once listening, and while Redis is up: without its store, a keyed post could post twice.
  const health = new HealthState([SlackService.typeName]);
  let listening = false;
  let redisReady = false;
  const updateHealth = () => health.setAll(listening && redisReady ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => {
      redisReady = ready;
      updateHealth();
    },
  });
  const token = new Credential(TOKEN_VARIABLE, process.env, logger);
  const stopWatching = token.watch();
  if (!token.configured) {
    if (config.dryRun) logger.warn(`${TOKEN_VARIABLE} is not set: dry run, requests are described and nothing is sent to Slack`);
    else logger.warn(`${TOKEN_VARIABLE} is not set: calls fail with FailedPrecondition until it is (or HOOKMESH_DRY_RUN=1)`);
  }
  const upstream = slackUpstream(config.apiUrl, logger);
  const slack = new SlackMessages({
    upstream,
    token,
    idempotency: new IdempotencyStore(redis, { keyPrefix: config.redisKeyPrefix, ttlMs: config.idempotencyTtlMs, lockMs: config.idempotencyLockMs }),
    dryRun: config.dryRun,
    logger,
    callTimeoutMs: config.callTimeoutMs,
  });
  const server = build({ slack, health, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  listening = true;
  updateHealth();
  logger.info({ apiUrl: config.apiUrl, dryRun: config.dryRun && !token.configured }, "slack integration ready");
  return {
    async stop() {
      await server.close(config.shutdownGraceMs);
      stopWatching();
      upstream.shutdown();
      redis.disconnect();
    },
  };
});
