import { connectRedis, createLogger, HealthState, runMain, ServingStatus } from "@hookmesh/kit";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { loadConfig } from "./config.js";
import { build } from "./server.js";
import { TaskStore } from "./task-store.js";

const logger = createLogger({ service: "tasks", level: process.env.LOG_LEVEL });

await runMain(logger, async () => {
  const config = loadConfig();
  // Serving follows the Redis connection: without its store, tasks cannot make a task durable.
  const health = new HealthState([TaskService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const store = new TaskStore(redis, { keyPrefix: config.redisKeyPrefix, maxAttempts: config.maxAttempts });
  const server = build({ store, health, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  return {
    async stop() {
      await server.close(config.shutdownGraceMs);
      redis.disconnect();
    },
  };
});
