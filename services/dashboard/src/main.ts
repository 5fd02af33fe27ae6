import { runMain } from "@hookmesh/kit";
import { composeDashboard } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("dashboard", loadConfig, async (config, logger) => {
  const dashboard = await composeDashboard(config, { logger });
  const { web } = await dashboard.start();
  logger.info(
    { url: dashboard.site.publicUrl, port: web.port, database: config.database.kind },
    "dashboard ready; sign in with `npx hookmesh dashboard`",
  );
  return { stop: () => dashboard.close() };
});
