import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { envRedis } from "../src/config.js";
import { connectRedis } from "../src/redis.js";
import { formatRedisAcl, type RedisAclUser, redisAclRule } from "../src/redis-acl.js";
import { memoryLogger, TEST_REDIS_URL } from "../src/testing/index.js";

// Two services' users as `hookmesh redis-acl` would make them, with names and prefixes no
// other test uses; the default user (the test's own) creates and removes them.
const run = randomUUID();
const tasks: RedisAclUser = {
  user: `hookmesh-test-tasks-${run}`,
  keyPrefix: `hookmesh-test:${run}:tasks:`,
  password: randomBytes(24).toString("base64url"),
};
const gateway: RedisAclUser = {
  user: `hookmesh-test-gateway-${run}`,
  keyPrefix: `hookmesh-test:${run}:gateway:`,
  password: randomBytes(24).toString("base64url"),
};

const admin = new Redis(TEST_REDIS_URL, { lazyConnect: true });
let asTasks: Redis;

function connectAs(user: RedisAclUser): Promise<Redis> {
  const redis = new Redis(TEST_REDIS_URL, {
    lazyConnect: true,
    username: user.user,
    password: user.password,
    maxRetriesPerRequest: 0,
  });
  return redis.connect().then(() => redis);
}

beforeAll(async () => {
  await admin.connect();
  for (const user of [tasks, gateway]) await admin.call("ACL", "SETUSER", ...redisAclRule(user));
  await admin.set(`${gateway.keyPrefix}delivery:1`, "raw body");
  asTasks = await connectAs(tasks);
});

afterAll(async () => {
  asTasks.disconnect();
  await admin.call("ACL", "DELUSER", tasks.user, gateway.user);
  await admin.del(`${gateway.keyPrefix}delivery:1`, `${tasks.keyPrefix}task:1`, `${tasks.keyPrefix}events`);
  admin.disconnect();
});

describe("Redis ACL rules", () => {
  it("let a service use its own keys: strings, streams, scripts and transactions", async () => {
    await asTasks.set(`${tasks.keyPrefix}task:1`, "x");
    expect(await asTasks.get(`${tasks.keyPrefix}task:1`)).toBe("x");
    await asTasks.xadd(`${tasks.keyPrefix}events`, "*", "k", "v");
    expect(await asTasks.eval("return redis.call('GET', KEYS[1])", 1, `${tasks.keyPrefix}task:1`)).toBe("x");
    expect(await asTasks.multi().get(`${tasks.keyPrefix}task:1`).exec()).toEqual([[null, "x"]]);
    expect(await asTasks.info("server")).toMatch(/redis_version/);
  });

  it("refuse another service's keys, also from inside a script (NOPERM)", async () => {
    await expect(asTasks.get(`${gateway.keyPrefix}delivery:1`)).rejects.toThrow(/NOPERM/);
    await expect(asTasks.set(`${gateway.keyPrefix}delivery:1`, "forged")).rejects.toThrow(/NOPERM/);
    await expect(
      asTasks.eval("return redis.call('GET', KEYS[1])", 1, `${gateway.keyPrefix}delivery:1`),
    ).rejects.toThrow(/NOPERM/);
    expect(await admin.get(`${gateway.keyPrefix}delivery:1`)).toBe("raw body");
  });

  it("let a service publish and subscribe on its own channels only", async () => {
    const subscriber = await connectAs(tasks);
    try {
      await subscriber.subscribe(`${tasks.keyPrefix}events:1`);
      const received = new Promise<string>((resolve) => subscriber.once("message", (channel) => resolve(channel)));
      await asTasks.eval("return redis.call('PUBLISH', ARGV[1], '')", 0, `${tasks.keyPrefix}events:1`);
      expect(await received).toBe(`${tasks.keyPrefix}events:1`);
      await expect(subscriber.subscribe(`${gateway.keyPrefix}events:1`)).rejects.toThrow(/NOPERM/);
      await expect(asTasks.publish(`${gateway.keyPrefix}events:1`, "")).rejects.toThrow(/NOPERM/);
      await expect(subscriber.psubscribe("*")).rejects.toThrow(/NOPERM/);
    } finally {
      subscriber.disconnect();
    }
  });

  it("refuse administrative and dangerous commands", async () => {
    for (const command of [
      ["FLUSHALL"],
      ["KEYS", "*"],
      ["CONFIG", "GET", "*"],
      ["ACL", "LIST"],
      ["CLIENT", "LIST"],
      ["SAVE"],
    ]) {
      await expect(asTasks.call(command[0]!, ...command.slice(1)), command.join(" ")).rejects.toThrow(/NOPERM/);
    }
  });

  it("are what a service connects with, through envRedis and connectRedis", async () => {
    const env = {
      TASKS_REDIS_URL: `${TEST_REDIS_URL.replace("://", `://${tasks.user}@`)}`,
      TASKS_REDIS_PASSWORD: tasks.password,
    };
    const config = envRedis(env, "TASKS", tasks.keyPrefix);
    const redis = await connectRedis({ ...config, logger: memoryLogger().logger });
    try {
      expect(await redis.get(`${tasks.keyPrefix}task:1`)).toBe("x");
      await expect(redis.get(`${gateway.keyPrefix}delivery:1`)).rejects.toThrow(/NOPERM/);
    } finally {
      redis.disconnect();
    }
  });

  it("refuse a wrong password", async () => {
    const anonymous = new Redis(TEST_REDIS_URL);
    try {
      await expect(anonymous.call("AUTH", tasks.user, "wrong")).rejects.toThrow(/WRONGPASS/);
    } finally {
      anonymous.disconnect();
    }
  });

  it("print passwords only as hashes, in both formats", () => {
    for (const format of ["aclfile", "commands"] as const) {
      const text = formatRedisAcl([tasks, gateway], format);
      expect(text).not.toContain(tasks.password);
      expect(text).toContain(`~${tasks.keyPrefix}*`);
    }
    expect(formatRedisAcl([tasks], "aclfile")).toMatch(new RegExp(`^user ${tasks.user} on #[0-9a-f]{64} ~`));
  });

  it("refuse prefixes that would widen the pattern", () => {
    expect(() => redisAclRule({ ...tasks, keyPrefix: "hookmesh:*" })).toThrow(/glob/);
    expect(() => redisAclRule({ ...tasks, keyPrefix: "" })).toThrow(/non-empty/);
  });
});
