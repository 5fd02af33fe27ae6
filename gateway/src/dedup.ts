import type { Redis } from "ioredis";
import { storeCall } from "./store-call.js";

/** Marks a delivery claimed by a request that has not yet made it durable. */
const PENDING = "pending";

export type Claim = { fresh: true; key: string } | { fresh: false; taskId: string };

/**
 * The gateway's duplicate check: the first request for a delivery claims it; later ones
 * (provider retries, Slack's X-Slack-Retry-Num, Jira's retries for ~30 minutes) are answered
 * as duplicates while the claim lives. A claim whose delivery could not be made durable is
 * released, so the provider's retry is processed rather than dropped.
 */
export class DeliveryDedup {
  constructor(
    private readonly redis: Redis,
    private readonly options: { keyPrefix: string; windowMs: number },
  ) {}

  async claim(provider: string, sourceId: string, deliveryId: string): Promise<Claim> {
    const key = `${this.options.keyPrefix}dedup:${provider}:${encodeURIComponent(sourceId)}:${encodeURIComponent(deliveryId)}`;
    const claimed = await storeCall(() => this.redis.set(key, PENDING, "PX", this.options.windowMs, "NX"));
    if (claimed === "OK") return { fresh: true, key };
    const taskId = await storeCall(() => this.redis.get(key));
    return { fresh: false, taskId: taskId === PENDING || taskId === null ? "" : taskId };
  }

  /** Records the task a claimed delivery became, for the duplicates that follow. */
  async settle(key: string, taskId: string): Promise<void> {
    await storeCall(() => this.redis.set(key, taskId, "PX", this.options.windowMs, "XX"));
  }

  async release(key: string): Promise<void> {
    await storeCall(() => this.redis.del(key));
  }
}
