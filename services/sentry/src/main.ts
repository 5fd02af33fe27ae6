import { runMain } from "@hookmesh/kit";
import { composeSentry } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("sentry", loadConfig, async (config, logger) => {
  const service = await composeSentry(config, { logger, env: process.env });
  await service.server.listen(config.port, config.host);
  service.calls.logStartup({ apiUrl: config.apiUrl });
  return { stop: () => service.close() };
});
