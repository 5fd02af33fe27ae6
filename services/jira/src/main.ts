import { runMain } from "@hookmesh/kit";
import { composeJira } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("jira", loadConfig, async (config, logger) => {
  const service = await composeJira(config, { logger, env: process.env });
  await service.server.listen(config.port, config.host);
  service.calls.logStartup({ baseUrl: config.baseUrl, apiVersion: config.apiVersion, auth: config.auth });
  return { stop: () => service.close() };
});
