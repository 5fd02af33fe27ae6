import type { Env } from "@hookmesh/kit";

/** The tasks service's configuration in both benchmarks, over the defaults; each adds its own Redis key prefix. */
export const BENCH_TASKS_ENV: Env = {
  TASKS_RETRY_BASE_MS: "1000",
  TASKS_RETRY_MAX_MS: "10000",
  TASKS_TIMELINE_MAX_EVENTS: "1000",
  HOOKMESH_BOT_LOGINS: "",
  SHUTDOWN_GRACE_MS: "0",
};
