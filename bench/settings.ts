import type { Env } from "@hookmesh/kit";

/**
 * Cleartext on loopback for every service a benchmark starts, so that its figures stay
 * comparable with the results in bench/results, which were measured before mTLS; measuring
 * under the defaults is the performance work's.
 */
export const BENCH_INSECURE: Env = { HOOKMESH_INSECURE: "1" };

/** The tasks service's configuration in both benchmarks, over the defaults; each adds its own Redis key prefix. */
export const BENCH_TASKS_ENV: Env = {
  ...BENCH_INSECURE,
  TASKS_RETRY_BASE_MS: "1000",
  TASKS_RETRY_MAX_MS: "10000",
  TASKS_TIMELINE_MAX_EVENTS: "1000",
  HOOKMESH_BOT_LOGINS: "",
  SHUTDOWN_GRACE_MS: "0",
};
