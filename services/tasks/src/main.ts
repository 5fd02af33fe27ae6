import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeTasks } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("tasks", loadConfig, async (config, logger) => {
  const service = await composeTasks(config, { logger, env: process.env });
  const admin = await startAdminServer({
    ...config.admin,
    health: service.server.health,
    registry: service.metrics.registry,
    logger,
  });
  await service.server.listen(config.port, config.host);
  return {
    async stop() {
      await service.close();
      await admin.close();
    },
  };
});
