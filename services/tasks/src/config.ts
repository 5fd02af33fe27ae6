import {
  ConfigError,
  type Env,
  envDuration,
  envInt,
  envListen,
  envLogLevel,
  envNumber,
  envPeer,
  envRedis,
  envString,
  type ListenConfig,
  type LogLevel,
  type RedisConfig,
} from "@hookmesh/kit";

export interface TasksConfig extends ListenConfig {
  redis: RedisConfig;
  maxAttempts: number;
  /** Lost leases (worker crashes) a task survives; they do not count as failed attempts. */
  maxLostLeases: number;
  leaseMs: number;
  /** How often a worker's session stream carries a message. */
  sessionPingMs: number;
  /** How long after a worker's session stream ends its leases are given back, unless it comes back. */
  sessionReleaseMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  mention: string;
  botLogins: string[];
  routesFile?: string;
  /** The github service, asked who may add a label that triggers a rule. */
  githubUrl: string;
  /** The jira service, asked the groups of the author of an event a group-gated rule takes. */
  jiraUrl: string;
  timelineMaxEvents: number;
  eventTextBytes: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  budgets: BudgetConfig;
  /** How long an ended task is kept, with its raw body, timeline and delivery key. */
  retentionMs: number;
  /** How long an IGNORED task keeps its raw body. */
  ignoredBodyRetentionMs: number;
  maxWatchesPerCaller: number;
  maxWatches: number;
  /** Changes the change log (WatchChanges) keeps, newest first; older ones go, as do those older than the retention. */
  changeLogMax: number;
}

/** What runs may cost where a routing rule says nothing, and how far operators may retry. */
export interface BudgetConfig {
  /** Per-run cap for profiles whose `max_cost_usd` is 0. */
  defaultMaxCostUsd: number;
  /** Per routing rule and UTC day, for rules whose budget names none. */
  defaultDailyBudgetUsd: number;
  /** Total attempts a task may reach through operator retries. */
  maxAttemptsCeiling: number;
}

/** Far above any real agent's spend; a typo like "5e9" is refused rather than trusted. */
const MAX_USD = 1_000_000;

export function loadConfig(env: Env = process.env): TasksConfig {
  const retryBaseMs = envInt(env, "TASKS_RETRY_BASE_MS", 5_000, { min: 1 });
  const routesFile = envString(env, "TASKS_ROUTES_FILE", "");
  const peers = { GITHUB_URL: envPeer(env, "GITHUB_URL", 50061), JIRA_URL: envPeer(env, "JIRA_URL", 50063) };
  const maxAttempts = envInt(env, "TASKS_MAX_ATTEMPTS", 3, { min: 1, max: 100 });
  const retentionMs = envDuration(env, "TASKS_RETENTION", "30d");
  const ignoredBodyRetentionMs = envDuration(env, "TASKS_IGNORED_BODY_RETENTION", "1h");
  if (ignoredBodyRetentionMs > retentionMs) {
    throw new ConfigError("TASKS_IGNORED_BODY_RETENTION", "must not be longer than TASKS_RETENTION");
  }
  const maxWatches = envInt(env, "TASKS_MAX_WATCHES", 1_000, { min: 1 });
  // A worker stops its runs after half of this without a message on its session (so a third of
  // that half, pings at a sixth, still leaves two missed pings of slack).
  const sessionReleaseMs = envInt(env, "TASKS_SESSION_RELEASE_MS", 3_000, { min: 600 });
  return {
    ...envListen(env, "tasks", 50051, peers),
    redis: envRedis(env, "TASKS", "hookmesh:tasks:"),
    maxAttempts,
    maxLostLeases: envInt(env, "TASKS_MAX_LOST_LEASES", 10, { min: 1, max: 100 }),
    // A worker whose machine died (no connection end tells it) is known dead when its leases
    // expire, and its tasks come back at most a lease and a half later: 7.5 s with this.
    leaseMs: envInt(env, "TASKS_LEASE_MS", 5_000, { min: 1_000 }),
    sessionPingMs: Math.floor(sessionReleaseMs / 6),
    sessionReleaseMs,
    retryBaseMs,
    retryMaxMs: envInt(env, "TASKS_RETRY_MAX_MS", 300_000, { min: retryBaseMs }),
    mention: envString(env, "HOOKMESH_MENTION", "@hookmesh"),
    botLogins: envString(env, "HOOKMESH_BOT_LOGINS", "hookmesh[bot]")
      .split(",")
      .map((login) => login.trim())
      .filter((login) => login !== ""),
    ...(routesFile && { routesFile }),
    githubUrl: peers.GITHUB_URL,
    jiraUrl: peers.JIRA_URL,
    timelineMaxEvents: envInt(env, "TASKS_TIMELINE_MAX_EVENTS", 10_000, { min: 100 }),
    eventTextBytes: envInt(env, "TASKS_EVENT_TEXT_BYTES", 8_192, { min: 256 }),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0 }),
    logLevel: envLogLevel(env),
    budgets: {
      defaultMaxCostUsd: envNumber(env, "TASKS_DEFAULT_MAX_COST_USD", 5, { min: 0.01, max: MAX_USD }),
      defaultDailyBudgetUsd: envNumber(env, "TASKS_DEFAULT_DAILY_BUDGET_USD", 50, { min: 0.01, max: MAX_USD }),
      maxAttemptsCeiling: envInt(env, "TASKS_MAX_ATTEMPTS_CEILING", 10, { min: maxAttempts, max: 100 }),
    },
    retentionMs,
    ignoredBodyRetentionMs,
    maxWatchesPerCaller: envInt(env, "TASKS_MAX_WATCHES_PER_CALLER", 20, { min: 1, max: maxWatches }),
    maxWatches,
    // A stream trims whole nodes of 100 entries (Redis's stream-node-max-entries), so a smaller cap means nothing.
    changeLogMax: envInt(env, "TASKS_CHANGE_LOG_MAX", 100_000, { min: 100 }),
  };
}
