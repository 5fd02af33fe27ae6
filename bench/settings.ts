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

/** The secret every ingest benchmark signs its webhooks with. */
export const BENCH_WEBHOOK_SECRET = "bench-webhook-secret";

/** The gateway's configuration in the ingest benchmarks, over the defaults; each adds its ports, Redis key prefix and TASKS_URL. */
export const BENCH_GATEWAY_ENV: Env = {
  ...BENCH_INSECURE,
  GITHUB_WEBHOOK_SECRET: BENCH_WEBHOOK_SECRET,
  DELIVERY_RETENTION: "1h",
  GATEWAY_DEDUP_WINDOW: "1h",
  // Every request comes from 127.0.0.1: the limiter is taken but must not refuse.
  GATEWAY_RATE_LIMIT: "1000000",
  GATEWAY_RATE_BURST: "1000000",
  GATEWAY_RETRY_AFTER_SECONDS: "5",
  SHUTDOWN_GRACE_MS: "0",
};
