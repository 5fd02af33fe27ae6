import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeJira } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("jira", loadConfig, async (config, logger) => {
  const service = await composeJira(config, { logger, env: process.env });
  const admin = await startAdminServer({
    ...config.admin,
    health: service.server.health,
    registry: service.metrics.registry,
    logger,
  });
  await service.server.listen(config.port, config.host);
  service.calls.logStartup({ baseUrl: config.baseUrl, apiVersion: config.apiVersion, auth: config.auth });
  return {
    async stop() {
      await service.close();
      await admin.close();
    },
  };
});
