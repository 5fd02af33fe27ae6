import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeGitHub } from "./compose.js";
import { loadConfig, TOKEN_VARIABLE } from "./config.js";

await runMain("github", loadConfig, async (config, logger) => {
  const service = await composeGitHub(config, { logger, env: process.env });
  const admin = await startAdminServer({
    ...config.admin,
    health: service.server.health,
    registry: service.metrics.registry,
    logger,
  });
  await service.server.listen(config.port, config.host);
  const auth = service.auth.mode();
  if (auth === "app" && service.token.configured)
    logger.info(`GitHub App auth (GITHUB_APP_ID ${config.appId}); ${TOKEN_VARIABLE} is ignored`);
  service.calls.logStartup({ apiUrl: config.apiUrl, auth });
  return {
    async stop() {
      await service.close();
      await admin.close();
    },
  };
});
