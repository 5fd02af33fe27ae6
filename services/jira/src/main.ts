import { connectRedis, HealthState, runMain, ServingStatus } from "@hookmesh/kit";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { composeJira } from "./compose.js";
import { loadConfig } from "./config.js";
import { build } from "./server.js";


await runMain("jira", loadConfig, async (config, logger) => {
  // Serving follows the Redis connection: without the idempotency store, a retried call could comment twice.
  const health = new HealthState([JiraService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const core = composeJira(redis, config, process.env, logger);
  const stopWatching = core.watch();
  const server = build({ api: core.api, health, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  const missing = core.api.missingSetting();
  if (missing === undefined) logger.info({ baseUrl: config.baseUrl, apiVersion: config.apiVersion, auth: config.auth }, "calling Jira");
  else if (config.dryRun) logger.info({ missing }, "dry run: no request is sent to Jira; answers describe what would have been");
  else logger.warn({ missing }, `${missing} is not set: calls fail with FailedPrecondition until it is`);
  return {
    async stop() {
      await server.close(config.shutdownGraceMs);
      stopWatching();
      core.close();
      redis.disconnect();
    },
  };
});
