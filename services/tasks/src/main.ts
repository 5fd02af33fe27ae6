import { readFileSync } from "node:fs";
import { ConfigError, connectRedis, HealthState, runMain, ServingStatus } from "@hookmesh/kit";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { composeTasks } from "./compose.js";
import { loadConfig } from "./config.js";
import { build } from "./server.js";


await runMain("tasks", loadConfig, async (config, logger) => {
  // Serving follows the Redis connection: without its store, tasks cannot make a task durable.
  const health = new HealthState([TaskService.typeName, WorkerService.typeName, RouteService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const core = composeTasks(redis, config, logger);
  await core.start();
  if (config.routesFile) {
    const file = config.routesFile;
    const seeded = await Promise.resolve()
      .then(() => core.routes.seedFromYaml(readFileSync(file, "utf8")))
      .catch((err: Error) => {
        throw new ConfigError("TASKS_ROUTES_FILE", `${file}: ${err.message}`);
      });
    logger.info({ routes: seeded.map((r) => r.id) }, "routes seeded from file");
  }
  const server = build({ core, leaseMs: config.leaseMs, health, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  return {
    async stop() {
      await server.close(config.shutdownGraceMs);
      await core.close();
      redis.disconnect();
    },
  };
});
