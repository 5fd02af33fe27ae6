import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeSentry } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("sentry", loadConfig, async (config, logger) => {
  const service = await composeSentry(config, { logger, env: process.env });
  const admin = await startAdminServer({
    ...config.admin,
    health: service.server.health,
    registry: service.metrics.registry,
    logger,
  });
  await service.server.listen(config.port, config.host);
  service.calls.logStartup({ apiUrl: config.apiUrl });
  return {
    async stop() {
      await service.close();
      await admin.close();
    },
  };
});
