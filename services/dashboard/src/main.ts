import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeDashboard } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("dashboard", loadConfig, async (config, logger) => {
  const dashboard = await composeDashboard(config, { logger });
  const admin = await startAdminServer({
    ...config.admin,
    health: dashboard.grpc.health,
    registry: dashboard.metrics.registry,
    logger,
  });
  const { web } = await dashboard.start();
  logger.info(
    { url: dashboard.site.publicUrl, port: web.port, database: config.database.kind },
    "dashboard ready; sign in with `npx hookmesh dashboard`",
  );
  return {
    async stop() {
      await dashboard.close();
      await admin.close();
    },
  };
});
