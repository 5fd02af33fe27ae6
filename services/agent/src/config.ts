import { randomBytes } from "node:crypto";
import { hostname, tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import {
  ConfigError,
  type Env,
  envInt,
  envList,
  envListen,
  envLogLevel,
  envPeer,
  envString,
  envUrl,
  type ListenConfig,
  type LogLevel,
} from "@hookmesh/kit";
import { runnerNames } from "./runners/index.js";

export interface AgentConfig extends ListenConfig {
  tasksUrl: string;
  /** The runner for tasks whose profile names none. */
  defaultRunner: string;
  /**
   * The command line of the `command` runner, run with `/bin/sh -c`. Optional, so that a
   * worker that only runs `claude` needs no placeholder; tasks for the `command` runner fail
   * (not retryable) while it is unset.
   */
  agentCommand: string | undefined;
  claudeBin: string;
  concurrency: number;
  workerId: string;
  /** Longest run for profiles that set no `max_run_time`. */
  maxRunTimeMs: number;
  /** Each run gets a fresh directory under this one, removed when the run ends. */
  workdirRoot: string;
  /** Between SIGTERM and SIGKILL to an agent's process group. */
  killGraceMs: number;
  /** Output events longer than this are cut and marked truncated. */
  outputChunkBytes: number;
  /** How long a drain lets runs finish before they are stopped. */
  shutdownGraceMs: number;
  logLevel: LogLevel;
  /** The integration services that answers are posted through. */
  githubUrl: string;
  slackUrl: string;
  jiraUrl: string;
  sentryUrl: string;
  /** Linked from every answer as `{dashboardUrl}/tasks/{id}`. */
  dashboardUrl: string;
  /** Least time between progress edits of a task's acknowledgment; 0 turns them off. */
  progressIntervalMs: number;
  sandbox: SandboxConfig;
  workspace: WorkspaceConfig;
  /** The author and committer of the commits a run's changes are published as. */
  gitAuthor: { name: string; email: string };
}

/** Checkouts of the repositories tasks name (README, Workspaces). */
export interface WorkspaceConfig {
  /** GITHUB_GIT_URL: where git clones from, e.g. https://github.com or a GHES host; no trailing slash. */
  gitUrl: string;
  /** AGENT_REPO_CACHE: the bare mirrors, one per repository; one worker process per directory. */
  cacheDir: string;
  /** AGENT_CLONE_TIMEOUT_MS: longest a fetch (or clone) of one repository may take. */
  cloneTimeoutMs: number;
  /** AGENT_REPO_MAX_BYTES: a repository whose mirror is larger is refused (and not kept). */
  maxRepoBytes: number;
  /** AGENT_REPO_CACHE_MAX_BYTES: least recently used mirrors are removed beyond it. */
  maxCacheBytes: number;
  /** AGENT_CONFIG_BUNDLES_DIR: the configuration bundles profiles may name; undefined: none. */
  configBundlesDir: string | undefined;
}

export interface SandboxConfig {
  /** `bwrap` (the default): every run in its own bubblewrap sandbox; `off`: unsandboxed. */
  mode: "bwrap" | "off";
  /** The bubblewrap binary. */
  bwrap: string;
  /** Host paths every sandbox sees read-only, e.g. where an agent CLI or its tools are installed. */
  readonlyPaths: string[];
}

export function loadConfig(env: Env = process.env): AgentConfig {
  const defaultRunner = envString(env, "AGENT_RUNNER", "command");
  if (!runnerNames.includes(defaultRunner)) {
    throw new ConfigError("AGENT_RUNNER", `expected one of ${runnerNames.join(", ")}, got "${defaultRunner}"`);
  }
  const agentCommand = envString(env, "AGENT_COMMAND", "");
  const workdirRoot = envString(env, "AGENT_WORKDIR", join(tmpdir(), "hookmesh-runs"));
  const peers = {
    TASKS_URL: envPeer(env, "TASKS_URL", 50051),
    GITHUB_URL: envPeer(env, "GITHUB_URL", 50061),
    SLACK_URL: envPeer(env, "SLACK_URL", 50062),
    JIRA_URL: envPeer(env, "JIRA_URL", 50063),
    SENTRY_URL: envPeer(env, "SENTRY_URL", 50064),
  };
  return {
    ...envListen(env, "agent", 50052, peers),
    tasksUrl: peers.TASKS_URL,
    defaultRunner,
    agentCommand: agentCommand === "" ? undefined : agentCommand,
    claudeBin: envString(env, "CLAUDE_BIN", "claude"),
    concurrency: envInt(env, "AGENT_CONCURRENCY", 2, { min: 1, max: 100 }),
    // Unique per process, so that two workers on one host (or a restarted one) never share leases.
    workerId: envString(env, "AGENT_ID", `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`),
    maxRunTimeMs: envInt(env, "AGENT_MAX_RUN_TIME_MS", 30 * 60_000, { min: 1 }),
    workdirRoot,
    killGraceMs: envInt(env, "AGENT_KILL_GRACE_MS", 5_000, { min: 0 }),
    outputChunkBytes: envInt(env, "AGENT_OUTPUT_CHUNK_BYTES", 4096, { min: 64, max: 1024 * 1024 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    githubUrl: peers.GITHUB_URL,
    slackUrl: peers.SLACK_URL,
    jiraUrl: peers.JIRA_URL,
    sentryUrl: peers.SENTRY_URL,
    dashboardUrl: envUrl(env, "HOOKMESH_DASHBOARD_URL", "http://127.0.0.1:8070"),
    progressIntervalMs: envInt(env, "AGENT_PROGRESS_INTERVAL_MS", 15_000, { min: 0 }),
    sandbox: sandboxConfig(env),
    workspace: workspaceConfig(env, workdirRoot),
    gitAuthor: gitAuthor(env),
  };
}

function workspaceConfig(env: Env, workdirRoot: string): WorkspaceConfig {
  const cacheDir = envString(env, "AGENT_REPO_CACHE", join(workdirRoot, "repos"));
  if (!isAbsolute(cacheDir)) throw new ConfigError("AGENT_REPO_CACHE", `expected an absolute path, got "${cacheDir}"`);
  const bundles = envString(env, "AGENT_CONFIG_BUNDLES_DIR", "");
  if (bundles !== "" && !isAbsolute(bundles)) {
    throw new ConfigError("AGENT_CONFIG_BUNDLES_DIR", `expected an absolute path, got "${bundles}"`);
  }
  const gitUrl = envUrl(env, "GITHUB_GIT_URL", "https://github.com");
  const { username, password } = new URL(gitUrl);
  if (username !== "" || password !== "") {
    throw new ConfigError("GITHUB_GIT_URL", "must not hold credentials: each fetch gets its own short-lived token");
  }
  return {
    gitUrl,
    cacheDir,
    cloneTimeoutMs: envInt(env, "AGENT_CLONE_TIMEOUT_MS", 10 * 60_000, { min: 1_000 }),
    maxRepoBytes: envInt(env, "AGENT_REPO_MAX_BYTES", 2 * GIB, { min: 1 }),
    maxCacheBytes: envInt(env, "AGENT_REPO_CACHE_MAX_BYTES", 20 * GIB, { min: 1 }),
    configBundlesDir: bundles === "" ? undefined : bundles,
  };
}

const GIB = 1024 ** 3;

function gitAuthor(env: Env): { name: string; email: string } {
  const name = envString(env, "AGENT_GIT_AUTHOR_NAME", "hookmesh[bot]");
  const email = envString(env, "AGENT_GIT_AUTHOR_EMAIL", "hookmesh[bot]@users.noreply.github.com");
  if (name.trim() === "" || /[<>\n]/.test(name))
    throw new ConfigError("AGENT_GIT_AUTHOR_NAME", `expected a name without <, > or newlines, got "${name}"`);
  if (!/^[^\s<>@]+@[^\s<>@]+$/.test(email))
    throw new ConfigError("AGENT_GIT_AUTHOR_EMAIL", `expected an email address, got "${email}"`);
  return { name, email };
}

function sandboxConfig(env: Env): SandboxConfig {
  const mode = envString(env, "AGENT_SANDBOX", "bwrap");
  if (mode !== "bwrap" && mode !== "on" && mode !== "off") {
    throw new ConfigError("AGENT_SANDBOX", `expected bwrap (or on) or off, got "${mode}"`);
  }
  const readonlyPaths = envList(env, "AGENT_SANDBOX_READONLY_PATHS");
  const relative = readonlyPaths.find((path) => !isAbsolute(path));
  if (relative !== undefined) {
    throw new ConfigError("AGENT_SANDBOX_READONLY_PATHS", `expected absolute paths, got "${relative}"`);
  }
  return {
    mode: mode === "off" ? "off" : "bwrap",
    bwrap: envString(env, "AGENT_SANDBOX_BWRAP", "/usr/bin/bwrap"),
    readonlyPaths,
  };
}
