import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeGateway } from "./compose.js";
import { BUILT_IN_PROVIDERS, loadConfig } from "./config.js";

await runMain("gateway", loadConfig, async (config, logger) => {
  const service = await composeGateway(config, { logger, env: process.env });
  const admin = await startAdminServer({
    ...config.admin,
    health: service.server.grpc.health,
    registry: service.metrics.registry,
    logger,
  });
  await service.server.listen(config.httpPort, config.port, config.host);
  service.start();
  for (const provider of BUILT_IN_PROVIDERS) {
    if (config.secrets[provider].length === 0 && !config.allowUnsigned.includes(provider)) {
      logger.warn(`no secret for ${provider} webhooks: POST /webhooks/${provider} answers 404`);
    }
  }
  return {
    async stop() {
      await service.close();
      await admin.close();
    },
  };
});
