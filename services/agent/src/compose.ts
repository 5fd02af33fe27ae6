import {
  type ClientFactory,
  createClientFactory,
  createServiceMetrics,
  type Env,
  HealthState,
  type Logger,
  type MeshServer,
  openIdentity,
  type ServiceMetrics,
  ServingStatus,
} from "@hookmesh/kit";
import { AgentService } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import type { AgentConfig } from "./config.js";
import { agentMetrics } from "./metrics.js";
import { WorkerPool } from "./pool.js";
import { createReplierFactory } from "./replies/replier.js";
import { createRunners } from "./runners/index.js";
import type { ResolveHost } from "./sandbox/egress-proxy.js";
import { BwrapSandbox, type Sandbox, unsandboxed } from "./sandbox/sandbox.js";
import { build } from "./server.js";
import { Checkouts } from "./workspace/checkout.js";
import { Publisher } from "./workspace/publish.js";

export interface AgentDeps {
  logger: Logger;
  /** The environment agents inherit (filtered by each profile's allowed_env). */
  env: Env;
  /**
   * The clients of the tasks and integration services, calling as this worker's identity;
   * tests pass contract-level fakes.
   */
  clients?: ClientFactory;
  /** How the egress proxies resolve host names; tests point an allowlisted name at a local server. */
  resolveHost?: ResolveHost;
  /** The worker's metrics; its own registry unless given. */
  metrics?: ServiceMetrics;
}

/** The agent worker, built, not yet listening nor leasing. */
export interface ComposedAgent {
  server: MeshServer;
  /** Served on the admin port's `/metrics`. */
  metrics: ServiceMetrics;
  pool: WorkerPool;
  sandbox: Sandbox;
  /** Starts leasing tasks, and says SERVING: called once the server listens. */
  start(): void;
  /** Drains the pool (runs get the configured grace), then stops serving. */
  close(): Promise<void>;
}

/**
 * Builds the worker: its sandbox (probed: a worker whose sandbox cannot run refuses to start),
 * clients, runners and pool, and the server. Nothing to connect, so it returns at once; leasing
 * waits for `start`, so no task is taken before the worker can be seen.
 */
export function composeAgent(config: AgentConfig, deps: AgentDeps): ComposedAgent {
  const { logger } = deps;
  const sandbox = createSandbox(config, deps);
  const identity = openIdentity(config.identity, logger);
  const metrics = deps.metrics ?? createServiceMetrics("agent");
  const clients = deps.clients ?? createClientFactory({ logger, metrics, ...(identity && { identity }) });
  const health = new HealthState([AgentService.typeName]);
  const github = clients.client(GitHubService, config.githubUrl, "github");
  const checkouts = new Checkouts({ github, config: config.workspace, path: deps.env.PATH ?? "", logger });
  const pool = new WorkerPool({
    worker: clients.client(WorkerService, config.tasksUrl, "tasks"),
    runners: createRunners({ ...config, sandbox }),
    config: {
      ...config,
      workerEnv: deps.env,
      ...(config.workspace.configBundlesDir !== undefined && { configBundlesDir: config.workspace.configBundlesDir }),
    },
    checkouts,
    logger,
    replies: createReplierFactory({
      clients: {
        github,
        slack: clients.client(SlackService, config.slackUrl, "slack"),
        jira: clients.client(JiraService, config.jiraUrl, "jira"),
        sentry: clients.client(SentryService, config.sentryUrl, "sentry"),
      },
      logger,
    }),
    publisher: new Publisher({ github, settings: { author: config.gitAuthor }, logger }),
    onDrain: () => health.setAll(ServingStatus.NOT_SERVING),
    observer: agentMetrics(metrics, () => pool),
  });
  const server = build({
    pool,
    health,
    drainGraceMs: config.shutdownGraceMs,
    logger,
    identity,
    tokens: config.operatorTokens,
    limits: config.limits,
    metrics,
  });
  return {
    server,
    metrics,
    pool,
    sandbox,
    start() {
      pool.start();
      health.setAll(ServingStatus.SERVING);
    },
    async close() {
      await pool.drain(config.shutdownGraceMs);
      await server.close(config.shutdownGraceMs);
      clients.close();
      identity?.close();
    },
  };
}

function createSandbox(config: AgentConfig, deps: AgentDeps): Sandbox {
  if (config.sandbox.mode === "off") {
    deps.logger.warn(
      "AGENT_SANDBOX=off: agents run unsandboxed, with this worker's files, processes, network and the mesh's ports",
    );
    return unsandboxed();
  }
  const sandbox = new BwrapSandbox({
    bwrap: config.sandbox.bwrap,
    readonlyPaths: config.sandbox.readonlyPaths,
    runnerBinaries: [config.claudeBin],
    path: deps.env.PATH ?? "",
    ...(deps.resolveHost && { resolveHost: deps.resolveHost }),
  });
  sandbox.probe();
  return sandbox;
}
