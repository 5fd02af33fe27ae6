import { runMain } from "@hookmesh/kit";
import { composeTasks } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("tasks", loadConfig, async (config, logger) => {
  const service = await composeTasks(config, { logger, env: process.env });
  await service.server.listen(config.port, config.host);
  return { stop: () => service.close() };
});
