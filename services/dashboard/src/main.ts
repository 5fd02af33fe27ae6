import { runMain } from "@hookmesh/kit";
import { composeDashboard } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("dashboard", loadConfig, async (config, logger) => {
  const dashboard = await composeDashboard(config, { logger });
  const { web } = await dashboard.start();
  // ADMIN PORT (51070, DASHBOARD_ADMIN_PORT): the single call site of kit's startAdminServer,
  // wired when the kit's admin server (branch `metrics`) is merged, as the other services' mains do:
  //   startAdminServer({ ...config.admin, health: dashboard.grpc.health, registry, logger })
  logger.info(
    { url: dashboard.site.publicUrl, port: web.port, database: config.database.kind },
    "dashboard ready; sign in with `npx hookmesh dashboard`",
  );
  return { stop: () => dashboard.close() };
});
