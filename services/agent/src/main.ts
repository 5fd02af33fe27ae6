import { createClientFactory, HealthState, runMain, ServingStatus } from "@hookmesh/kit";
import { AgentService } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { loadConfig } from "./config.js";
import { WorkerPool } from "./pool.js";
import { createReplierFactory } from "./replies/replier.js";
import { createRunners } from "./runners/index.js";
import { build } from "./server.js";


await runMain("agent", loadConfig, async (config, logger) => {
  const clients = createClientFactory({ logger });
  const health = new HealthState([AgentService.typeName]);
  const pool = new WorkerPool({
    worker: clients.client(WorkerService, config.tasksUrl),
    runners: createRunners(config),
    config: { ...config, workerEnv: process.env },
    logger,
    replies: createReplierFactory({
      clients: {
        github: clients.client(GitHubService, config.githubUrl),
        slack: clients.client(SlackService, config.slackUrl),
        jira: clients.client(JiraService, config.jiraUrl),
        sentry: clients.client(SentryService, config.sentryUrl),
      },
      logger,
    }),
    onDrain: () => health.setAll(ServingStatus.NOT_SERVING),
  });
  const server = build({ pool, health, drainGraceMs: config.shutdownGraceMs, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  if (config.defaultRunner === "command" && config.agentCommand === undefined) {
    logger.warn("AGENT_COMMAND is not set: tasks for the command runner fail until it is");
  }
  pool.start();
  health.setAll(ServingStatus.SERVING);
  logger.info({ workerId: config.workerId, concurrency: config.concurrency, runner: config.defaultRunner }, "leasing tasks");
  return {
    async stop() {
      await pool.drain(config.shutdownGraceMs);
      await server.close(config.shutdownGraceMs);
      clients.close();
    },
  };
});
