import type { RedisClient } from "@hookmesh/kit";
import { abortAfter } from "@hookmesh/kit";

/** How long `/readyz` waits for Redis to answer. */
const CHECK_TIMEOUT_MS = 1_000;

/**
 * The gateway can make a delivery durable when its outbox can take it, whatever the tasks
 * service's state: ready exactly when its Redis answers.
 */
export function outboxReadiness(redis: RedisClient) {
  return async (signal: AbortSignal): Promise<boolean> => {
    const timeout = abortAfter(signal, CHECK_TIMEOUT_MS);
    const ping = redis.ping().then(
      (reply) => reply === "PONG",
      () => false,
    );
    const gaveUp = new Promise<boolean>((resolve) =>
      timeout.signal.addEventListener("abort", () => resolve(false), { once: true }),
    );
    return Promise.race([ping, gaveUp]).finally(() => timeout.clear());
  };
}
