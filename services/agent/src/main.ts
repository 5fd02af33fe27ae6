import { runMain, startAdminServer } from "@hookmesh/kit";
import { composeAgent } from "./compose.js";
import { loadConfig } from "./config.js";

await runMain("agent", loadConfig, async (config, logger) => {
  const service = composeAgent(config, { logger, env: process.env });
  const admin = await startAdminServer({
    ...config.admin,
    health: service.server.health,
    registry: service.metrics.registry,
    logger,
  });
  await service.server.listen(config.port, config.host);
  service.start();
  if (config.defaultRunner === "command" && config.agentCommand === undefined) {
    logger.warn("AGENT_COMMAND is not set: tasks for the command runner fail until it is");
  }
  logger.info(
    {
      workerId: config.workerId,
      concurrency: config.concurrency,
      runner: config.defaultRunner,
      sandbox: service.sandbox.mode,
      ...(config.sandbox.readonlyPaths.length > 0 && { sandboxReadonlyPaths: config.sandbox.readonlyPaths }),
    },
    "leasing tasks",
  );
  return {
    async stop() {
      await service.close();
      await admin.close();
    },
  };
});
