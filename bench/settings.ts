import type { TasksSettings } from "../services/tasks/src/compose.js";

/** The tasks service as both benchmarks run it; each adds its own Redis key prefix. */
export const BENCH_TASKS_SETTINGS: Omit<TasksSettings, "redisKeyPrefix"> = {
  maxAttempts: 3,
  leaseMs: 30_000,
  retryBaseMs: 1_000,
  retryMaxMs: 10_000,
  mention: "@hookmesh",
  botLogins: [],
  timelineMaxEvents: 1_000,
  eventTextBytes: 8_192,
};
