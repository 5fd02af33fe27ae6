import { connectRedis, createClientFactory, runMain } from "@hookmesh/kit";
import { composeGateway } from "./compose.js";
import { BUILT_IN_PROVIDERS, loadConfig } from "./config.js";
import { outboxReadiness } from "./readiness.js";
import { build } from "./server.js";


await runMain("gateway", loadConfig, async (config, logger) => {
  const redis = await connectRedis({ url: config.redisUrl, variable: "REDIS_URL", logger });
  const clients = createClientFactory({ logger });
  const core = composeGateway(redis, clients, config, logger);
  await core.start();
  const gateway = build({ core, ready: outboxReadiness(redis), logger, tls: config.tls });
  for (const provider of BUILT_IN_PROVIDERS) {
    if (config.secrets[provider].length === 0 && !config.allowUnsigned.includes(provider)) {
      logger.warn(`no secret for ${provider} webhooks: POST /webhooks/${provider} answers 404`);
    }
  }
  await gateway.listen(config.httpPort, config.grpcPort, config.host);
  return {
    async stop() {
      await gateway.close(config.shutdownGraceMs);
      await core.close();
      clients.close();
      redis.disconnect();
    },
  };
});
