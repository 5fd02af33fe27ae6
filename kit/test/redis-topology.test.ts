import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, envRedis } from "../src/config.js";
import {
  connectRedis,
  duplicateRedis,
  execWaitingForReplicas,
  type RedisClient,
  RedisUnreachableError,
  ReplicasNotAcknowledgedError,
  waitForReplicas,
} from "../src/redis.js";
import { redisAclRule } from "../src/redis-acl.js";
import {
  freePort,
  memoryLogger,
  startRedisCluster,
  startRedisSentinel,
  type TestRedisCluster,
  type TestRedisSentinel,
} from "../src/testing/index.js";

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("no ConfigError");
}

describe("envRedis topologies", () => {
  it("reads cluster seeds and hash-tags the default prefix, the service's own variables first", () => {
    expect(envRedis({ REDIS_CLUSTER_NODES: "10.0.0.1:7000, [::1]:7001" }, "TASKS", "hookmesh:tasks:")).toEqual({
      url: "redis://127.0.0.1:6379",
      variable: "REDIS_URL",
      keyPrefix: "{hookmesh:tasks}:",
      topology: {
        kind: "cluster",
        nodes: [
          { host: "10.0.0.1", port: 7000 },
          { host: "::1", port: 7001 },
        ],
        variable: "REDIS_CLUSTER_NODES",
      },
    });
    const own = envRedis(
      { REDIS_CLUSTER_NODES: "a:1", TASKS_REDIS_CLUSTER_NODES: "b:2", TASKS_REDIS_PREFIX: "t{x}:" },
      "TASKS",
      "hookmesh:tasks:",
    );
    expect(own.topology).toEqual({
      kind: "cluster",
      nodes: [{ host: "b", port: 2 }],
      variable: "TASKS_REDIS_CLUSTER_NODES",
    });
    expect(own.keyPrefix).toBe("t{x}:");
    // Without a cluster the defaults stay as they were.
    expect(envRedis({}, "TASKS", "hookmesh:tasks:").keyPrefix).toBe("hookmesh:tasks:");
  });

  it("reads sentinels with the master's name and the replicas to wait for", () => {
    const config = envRedis(
      {
        REDIS_URL: "rediss://hookmesh-gateway@ignored:6379/3",
        REDIS_SENTINELS: "s1:26379,s2:26379",
        REDIS_SENTINEL_NAME: "mesh",
        GATEWAY_REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "250",
      },
      "GATEWAY",
      "hookmesh:gateway:",
    );
    expect(config.topology).toEqual({
      kind: "sentinel",
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26379 },
      ],
      name: "mesh",
      variable: "REDIS_SENTINELS",
    });
    expect(config.keyPrefix).toBe("hookmesh:gateway:");
    expect(config.waitReplicas).toEqual({ count: 1, timeoutMs: 250, variable: "GATEWAY_REDIS_WAIT_REPLICAS" });
  });

  it.each([
    [
      { REDIS_CLUSTER_NODES: "a:1", REDIS_SENTINELS: "s:2", REDIS_SENTINEL_NAME: "m" },
      "REDIS_SENTINELS",
      /either REDIS_CLUSTER_NODES or REDIS_SENTINELS/,
    ],
    [{ REDIS_SENTINELS: "s:2" }, "REDIS_SENTINEL_NAME", /name the master/],
    [{ REDIS_SENTINEL_NAME: "m" }, "REDIS_SENTINELS", /list the sentinels/],
    [{ REDIS_CLUSTER_NODES: "a:1", REDIS_SENTINEL_NAME: "m" }, "REDIS_SENTINEL_NAME", /no sentinel name/],
    [{ REDIS_CLUSTER_NODES: "a" }, "REDIS_CLUSTER_NODES", /host:port/],
    [{ TASKS_REDIS_CLUSTER_NODES: "a:99999" }, "TASKS_REDIS_CLUSTER_NODES", /host:port/],
    [{ REDIS_SENTINELS: " , ", REDIS_SENTINEL_NAME: "m" }, "REDIS_SENTINELS", /at least one/],
    [{ REDIS_CLUSTER_NODES: "a:1", REDIS_URL: "redis://a:1/2" }, "REDIS_URL", /only database 0/],
    [
      { REDIS_CLUSTER_NODES: "a:1", TASKS_REDIS_PREFIX: "hookmesh:tasks:" },
      "TASKS_REDIS_PREFIX",
      /hash tag, e.g. "\{hookmesh:tasks\}:"/,
    ],
    [{ REDIS_CLUSTER_NODES: "a:1", TASKS_REDIS_PREFIX: "{}:x:" }, "TASKS_REDIS_PREFIX", /hash tag/],
    [{ REDIS_WAIT_REPLICAS: "-1" }, "REDIS_WAIT_REPLICAS", /integer from 0/],
    [{ TASKS_REDIS_WAIT_TIMEOUT_MS: "0" }, "TASKS_REDIS_WAIT_TIMEOUT_MS", /integer from 1/],
  ])("refuses %j, naming %s", (env, variable, message) => {
    const err = configError(() => envRedis(env, "TASKS", "hookmesh:tasks:"));
    expect(err.variable).toBe(variable);
    expect(err.message).toMatch(message);
  });
});

/** A key and its prefix no other test uses, hash-tagged. */
function taggedPrefix(label: string): string {
  return `{hookmesh-test:${label}:${randomUUID()}}:`;
}

describe("a service on a Redis Cluster", () => {
  let cluster: TestRedisCluster;
  let redis: RedisClient;
  const log = memoryLogger();

  beforeAll(async () => {
    cluster = await startRedisCluster();
    const config = envRedis({ REDIS_CLUSTER_NODES: cluster.seeds }, "TEST", "hookmesh:test:");
    redis = await connectRedis({ ...config, logger: log.logger });
  }, 60_000);

  afterAll(async () => {
    redis?.disconnect();
    await cluster?.stop();
  });

  it("connects as a Cluster and runs one service's scripts, transactions and streams in its slot", async () => {
    expect(redis).toBeInstanceOf(Cluster);
    const prefix = taggedPrefix("slot");
    const keys = [`${prefix}a`, `${prefix}b`, `${prefix}stream`];
    await redis.eval(
      "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[1])",
      2,
      keys[0]!,
      keys[1]!,
      "v",
    );
    expect(await redis.multi().get(keys[0]!).get(keys[1]!).exec()).toEqual([
      [null, "v"],
      [null, "v"],
    ]);
    // A blocking read on a duplicate, as the gateway's outbox and BullMQ do.
    const reader = duplicateRedis(redis, { maxRetriesPerRequest: null, enableOfflineQueue: true, lazyConnect: false });
    try {
      await redis.xgroup("CREATE", keys[2]!, "g", "$", "MKSTREAM");
      const read = reader.xreadgroup("GROUP", "g", "c", "BLOCK", 5_000, "STREAMS", keys[2]!, ">");
      await new Promise((resolve) => setTimeout(resolve, 200));
      await redis.xadd(keys[2]!, "*", "f", "1");
      const [[, entries]] = (await read) as [string, [string, string[]][]][];
      expect(entries!.map(([, fields]) => fields)).toEqual([["f", "1"]]);
    } finally {
      reader.disconnect();
    }
  });

  it("delivers pub/sub between a subscriber duplicate and the shared connection", async () => {
    const channel = `${taggedPrefix("bell")}work-ready`;
    const subscriber = duplicateRedis(redis, { lazyConnect: true, autoResubscribe: false });
    try {
      await subscriber.connect();
      await subscriber.subscribe(channel);
      const message = once(subscriber, "message");
      await redis.publish(channel, "ring");
      expect(await message).toEqual([channel, "ring"]);
    } finally {
      subscriber.disconnect();
    }
  });

  it("sends WAIT to the master that owns the written key's slot, on the connection that wrote", async () => {
    const prefix = taggedPrefix("wait");
    const key = `${prefix}delivery`;
    const owner = await cluster.masterOf(key);
    const waits = async () => {
      const counts = new Map<number, number>();
      for (const port of cluster.ports) {
        const node = new Redis(port, "127.0.0.1");
        const stats = (await node.info("commandstats").finally(() => node.disconnect())) ?? "";
        counts.set(port, Number(/cmdstat_wait:calls=(\d+)/.exec(stats)?.[1] ?? 0));
      }
      return counts;
    };
    const before = await waits();
    const [reply] = await execWaitingForReplicas(redis, (p) => p.set(key, "1"), { count: 1, timeoutMs: 2_000 });
    expect(reply).toBe("OK");
    const after = await waits();
    for (const port of cluster.ports) expect(after.get(port)! - before.get(port)!).toBe(port === owner ? 1 : 0);

    // With the owner's replica stopped the write cannot reach it, and the wait says so.
    const replica = await cluster.replicaOf(owner);
    process.kill(cluster.pid(replica), "SIGSTOP");
    try {
      await expect(
        execWaitingForReplicas(redis, (p) => p.set(key, "2"), { count: 1, timeoutMs: 300 }),
      ).rejects.toBeInstanceOf(ReplicasNotAcknowledgedError);
      await expect(waitForReplicas(redis, key, { count: 1, timeoutMs: 300 })).rejects.toThrow(
        /0 of 1 replicas acknowledged the write within 300 ms/,
      );
    } finally {
      process.kill(cluster.pid(replica), "SIGCONT");
    }
    await waitForReplicas(redis, key, { count: 1, timeoutMs: 5_000 });
  });

  it("lets an ACL user confined to its hash-tagged prefix work the cluster", async () => {
    const prefix = taggedPrefix("acl");
    const user = {
      user: `hookmesh-test-${randomUUID()}`,
      keyPrefix: prefix,
      password: randomBytes(18).toString("hex"),
    };
    // ACLs are per node: they are applied on every one.
    for (const port of cluster.ports) {
      const node = new Redis(port, "127.0.0.1");
      await node.call("ACL", "SETUSER", ...redisAclRule(user)).finally(() => node.disconnect());
    }
    const config = envRedis(
      {
        REDIS_CLUSTER_NODES: cluster.seeds,
        TEST_REDIS_URL: `redis://${user.user}@127.0.0.1:1`,
        TEST_REDIS_PASSWORD: user.password,
        TEST_REDIS_PREFIX: prefix,
      },
      "TEST",
      "hookmesh:test:",
    );
    const asUser = await connectRedis({ ...config, logger: log.logger });
    try {
      await asUser.set(`${prefix}k`, "v");
      expect(await asUser.get(`${prefix}k`)).toBe("v");
      await expect(asUser.set("hookmesh-test:elsewhere", "v")).rejects.toThrow(/NOPERM/);
      await waitForReplicas(asUser, `${prefix}k`, { count: 1, timeoutMs: 2_000 });
    } finally {
      asUser.disconnect();
    }
  });
});

describe("a service behind Redis Sentinel", () => {
  let sentinel: TestRedisSentinel;

  beforeAll(async () => {
    sentinel = await startRedisSentinel();
  }, 60_000);

  afterAll(async () => {
    await sentinel?.stop();
  });

  it("follows the master the sentinels name, across a failover", async () => {
    const config = envRedis(
      { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name },
      "TEST",
      "hookmesh:test:",
    );
    const log = memoryLogger();
    const ready: boolean[] = [];
    const redis = await connectRedis({ ...config, logger: log.logger, onReadyChange: (r) => ready.push(r) });
    try {
      const key = `hookmesh-test:sentinel:${randomUUID()}`;
      await redis.set(key, "before");
      await waitForReplicas(redis, key, { count: 1, timeoutMs: 2_000 });
      const old = await sentinel.master();
      sentinel.kill(old);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const written = await redis.set(`${key}:after`, "after").then(
          () => true,
          () => false,
        );
        if (written) break;
        if (Date.now() > deadline) throw new Error("no write succeeded after the failover");
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(await sentinel.master()).not.toBe(old);
      // What the replica acknowledged before the master died is there.
      expect(await redis.get(key)).toBe("before");
      expect(ready).toContain(false);
      expect(log.lines().some((line) => line.includes("redis connection lost, reconnecting"))).toBe(true);
    } finally {
      redis.disconnect();
    }
  }, 60_000);
});

describe("connectRedis start-up errors", () => {
  it("names the variable that chose the mode when nothing answers", async () => {
    const [a, b] = [await freePort(), await freePort()];
    const logger = memoryLogger().logger;
    const clustered = envRedis({ REDIS_CLUSTER_NODES: `127.0.0.1:${a}` }, "TEST", "x:");
    const failed = connectRedis({ ...clustered, logger, connectTimeoutMs: 500 });
    await expect(failed).rejects.toBeInstanceOf(RedisUnreachableError);
    await expect(failed).rejects.toThrow(/cluster at 127.0.0.1:\d+ .*set REDIS_CLUSTER_NODES$/);
    const sentinels = envRedis({ TEST_REDIS_SENTINELS: `127.0.0.1:${b}`, REDIS_SENTINEL_NAME: "m" }, "TEST", "x:");
    await expect(connectRedis({ ...sentinels, logger, connectTimeoutMs: 500 })).rejects.toThrow(
      /master "m" from the sentinels at 127.0.0.1:\d+ .*set TEST_REDIS_SENTINELS$/,
    );
  });
});
