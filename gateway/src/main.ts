import { createClientFactory, createLogger, runMain } from "@hookmesh/kit";
import { Health } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { loadConfig } from "./config.js";
import { Intake } from "./intake.js";
import { tasksReadiness } from "./readiness.js";
import { build } from "./server.js";

const logger = createLogger({ service: "gateway", level: process.env.LOG_LEVEL });

await runMain(logger, async () => {
  const config = loadConfig();
  const clients = createClientFactory({ logger });
  const gateway = build({
    intake: new Intake(clients.client(TaskService, config.tasksUrl), {
      submitTimeoutMs: config.submitTimeoutMs,
      retryAfterSeconds: config.retryAfterSeconds,
    }),
    github: { secrets: config.githubWebhookSecrets, maxBodyBytes: config.githubMaxBodyBytes },
    ready: tasksReadiness(clients.client(Health, config.tasksUrl)),
    logger,
    tls: config.tls,
  });
  if (config.githubWebhookSecrets.length === 0) {
    logger.warn("GITHUB_WEBHOOK_SECRET is not set: POST /webhooks/github answers 404");
  }
  await gateway.listen(config.httpPort, config.grpcPort, config.host);
  return {
    async stop() {
      await gateway.close(config.shutdownGraceMs);
      clients.close();
    },
  };
});
