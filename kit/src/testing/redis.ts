import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";

export const TEST_REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A real Redis connection and a key prefix no other test uses; `cleanup` deletes its keys. */
export interface TestRedis {
  redis: Redis;
  prefix: string;
  cleanup(): Promise<void>;
}

export async function testRedis(label: string): Promise<TestRedis> {
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const prefix = `hookmesh-test:${label}:${randomUUID()}:`;
  return {
    redis,
    prefix,
    async cleanup() {
      const keys: string[] = [];
      for await (const batch of redis.scanStream({ match: `${prefix}*`, count: 500 }))
        keys.push(...(batch as string[]));
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    },
  };
}
