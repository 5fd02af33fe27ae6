import { runMain } from "@hookmesh/kit";
import { composeSlack } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("slack", loadConfig, async (config, logger) => {
  const service = await composeSlack(config, { logger, env: process.env });
  await service.server.listen(config.port, config.host);
  service.calls.logStartup({ apiUrl: config.apiUrl });
  return { stop: () => service.close() };
});
