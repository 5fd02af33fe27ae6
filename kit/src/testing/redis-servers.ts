import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort } from "./net.js";

const run = promisify(execFile);

/** The Redis server binary the tests start (7.0 or later: `cluster-port`, Sentinel). */
const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? "redis-server";
const REDIS_CLI = process.env.REDIS_CLI_BIN ?? "redis-cli";

/** Redis servers a test started as its own processes on loopback; `stop` kills them all and removes their files. */
interface RedisServers {
  /** Kills the server on `port` at once (SIGKILL), as a crashed machine would go. */
  kill(port: number): void;
  /** Starts the server on `port` again after `kill`, with its files. */
  restart(port: number): Promise<void>;
  /** The process id of the server on `port`, e.g. to stop it for a while (SIGSTOP). */
  pid(port: number): number;
  stop(): Promise<void>;
}

export interface TestRedisCluster extends RedisServers {
  /** `host:port,…` of every node, for `REDIS_CLUSTER_NODES`. */
  seeds: string;
  ports: number[];
  /** The port of the master that serves `key`'s slot now. */
  masterOf(key: string): Promise<number>;
  /** The port of a replica of the master on `port`. */
  replicaOf(master: number): Promise<number>;
  /** Resolves once every live node sees the cluster whole again (`cluster_state:ok`, every slot served). */
  waitHealthy(timeoutMs?: number): Promise<void>;
}

export interface TestRedisSentinel extends RedisServers {
  /** `host:port,…` of the sentinels, for `REDIS_SENTINELS`. */
  sentinels: string;
  /** The master's name, for `REDIS_SENTINEL_NAME`. */
  name: string;
  /** The port of the master the sentinels name now. */
  master(): Promise<number>;
}

/** A server could not bind a port it was given: taken since it was found free. */
class PortTakenError extends Error {}

/** Starts Redis processes under a fresh directory, tracking each to kill it later. */
class ServerGroup {
  readonly dir = mkdtempSync(join(tmpdir(), "hookmesh-redis-"));
  private readonly processes = new Map<number, ChildProcess>();
  private readonly args = new Map<number, readonly string[]>();

  /** A test runner that exits without `stop` (a timeout, a crash) leaves no server behind. */
  private readonly killAll = () => {
    for (const child of this.processes.values()) child.kill("SIGKILL");
  };

  constructor() {
    process.once("exit", this.killAll);
  }

  /**
   * Starts a server on `count` ports chosen free now, with the arguments `args` makes of them.
   * A port free when chosen can still be taken before the server binds it (by another process's
   * server), so on "Address already in use" it chooses again, a few times. Resolves with the
   * ports it started on; the first keys the server.
   */
  async startOnFreePorts(count: number, args: (ports: number[]) => string[]): Promise<number[]> {
    for (let attempt = 1; ; attempt++) {
      // freePort never hands out a port twice: servers starting side by side never share one.
      const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
      try {
        await this.start(ports[0] as number, args(ports));
        return ports;
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt === 5) throw err;
      }
    }
  }

  async start(port: number, args: readonly string[]): Promise<void> {
    this.args.set(port, args);
    // Redis logs to stdout; the end of it is kept to say why a server that exits at once did.
    const child = spawn(REDIS_SERVER, [...args], { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const keep = (chunk: Buffer) => {
      log = (log + chunk.toString("utf8")).slice(-4_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.processes.set(port, child);
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) {
          const message = `redis-server on ${port} exited with ${child.exitCode}:\n${log.trimEnd()}`;
          throw log.includes("Address already in use") ? new PortTakenError(message) : new Error(message);
        }
        // The server answering must be this one, not another that holds the port this one could not bind.
        return (await serverPid(port)) === child.pid ? true : undefined;
      }, 10_000);
    } catch (err) {
      child.kill("SIGKILL");
      this.processes.delete(port);
      this.args.delete(port);
      throw err;
    }
  }

  kill(port: number): void {
    this.processes.get(port)?.kill("SIGKILL");
  }

  /** Starts the killed server on `port` again, as it was started (a cluster node rejoins from its nodes file). */
  async restart(port: number): Promise<void> {
    const args = this.args.get(port);
    if (args === undefined) throw new Error(`no Redis server of this test on ${port}`);
    await this.start(port, args);
  }

  pid(port: number): number {
    const pid = this.processes.get(port)?.pid;
    if (pid === undefined) throw new Error(`no Redis server of this test on ${port}`);
    return pid;
  }

  isRunning(port: number): boolean {
    const child = this.processes.get(port);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.processes.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }),
    );
    process.removeListener("exit", this.killAll);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A Redis Cluster of `masters` masters with `replicasPerMaster` replicas each, on free
 * loopback ports, with a 1 s node timeout so that a killed master's replica takes over in
 * seconds. Nothing is saved to disk. The caller stops it, also when the test failed.
 */
export async function startRedisCluster({ masters = 3, replicasPerMaster = 1 } = {}): Promise<TestRedisCluster> {
  const group = new ServerGroup();
  const count = masters * (1 + replicasPerMaster);
  const ports: number[] = [];
  try {
    // The bus port is chosen too (`cluster-port`), not left at port + 10000, which may be taken or beyond 65535.
    const started = await Promise.all(
      Array.from({ length: count }, () =>
        group.startOnFreePorts(2, ([port, bus]) => [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--cluster-enabled",
          "yes",
          "--cluster-port",
          String(bus),
          "--cluster-config-file",
          join(group.dir, `nodes-${port}.conf`),
          "--cluster-node-timeout",
          "1000",
          "--save",
          "",
          "--appendonly",
          "no",
          "--repl-diskless-sync-delay",
          "0",
          "--dir",
          group.dir,
        ]),
      ),
    );
    ports.push(...started.map(([port]) => port as number));
    await run(REDIS_CLI, [
      "--cluster",
      "create",
      ...ports.map((port) => `127.0.0.1:${port}`),
      "--cluster-replicas",
      String(replicasPerMaster),
      "--cluster-yes",
    ]);
  } catch (err) {
    await group.stop();
    throw err;
  }
  const live = () => ports.filter((port) => group.isRunning(port));
  const cluster: TestRedisCluster = {
    seeds: ports.map((port) => `127.0.0.1:${port}`).join(","),
    ports,
    kill: (port) => group.kill(port),
    pid: (port) => group.pid(port),
    restart: (port) => group.restart(port),
    stop: () => group.stop(),
    async masterOf(key) {
      for (const port of live()) {
        const owner = await withNode(port, async (node) => {
          const slot = (await node.call("CLUSTER", "KEYSLOT", key)) as number;
          const ranges = (await node.call("CLUSTER", "SLOTS")) as [number, number, [string, number, string]][];
          return ranges.find(([from, to]) => slot >= from && slot <= to)?.[2][1];
        }).catch(() => undefined);
        if (owner !== undefined && (await ping(owner))) return owner;
      }
      throw new Error(`no live master serves the slot of ${key}`);
    },
    async replicaOf(master) {
      const info = await withNode(master, (node) => node.info("replication"));
      const port = /slave0:ip=[^,]+,port=(\d+)/.exec(info)?.[1];
      if (port === undefined) throw new Error(`the master on ${master} has no replica`);
      return Number(port);
    },
    async waitHealthy(timeoutMs = 30_000) {
      await waitFor(async () => {
        for (const port of live()) {
          const info = await withNode(port, (node) => node.call("CLUSTER", "INFO") as Promise<string>).catch(() => "");
          if (!info.includes("cluster_state:ok") || !info.includes("cluster_slots_ok:16384")) return undefined;
          if (!(await replicating(port))) return undefined;
        }
        return true;
      }, timeoutMs);
    },
  };
  try {
    await cluster.waitHealthy();
  } catch (err) {
    await group.stop();
    throw err;
  }
  return cluster;
}

/**
 * One master, one replica and three sentinels watching it (quorum 2, down after 1 s), on free
 * loopback ports, nothing saved to disk. The caller stops them, also when the test failed.
 */
export async function startRedisSentinel(name = "hookmesh"): Promise<TestRedisSentinel> {
  const group = new ServerGroup();
  const sentinelPorts: number[] = [];
  try {
    const data = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"];
    data.push("--dir", group.dir);
    const [masterPort] = (await group.startOnFreePorts(1, ([port]) => ["--port", String(port), ...data])) as [number];
    const [replicaPort] = (await group.startOnFreePorts(1, ([port]) => [
      "--port",
      String(port),
      "--replicaof",
      "127.0.0.1",
      String(masterPort),
      ...data,
    ])) as [number];
    const started = await Promise.all(
      Array.from({ length: 3 }, () =>
        group.startOnFreePorts(1, ([port]) => {
          // Sentinel rewrites its configuration file, so each gets its own.
          const conf = join(group.dir, `sentinel-${port}.conf`);
          writeFileSync(
            conf,
            [
              `port ${port}`,
              "bind 127.0.0.1",
              `dir ${group.dir}`,
              `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
              `sentinel down-after-milliseconds ${name} 1000`,
              `sentinel failover-timeout ${name} 3000`,
              "",
            ].join("\n"),
          );
          return [conf, "--sentinel"];
        }),
      ),
    );
    sentinelPorts.push(...started.map(([port]) => port as number));
    const askSentinel = async (): Promise<number> => {
      for (const port of sentinelPorts) {
        const answer = await withNode(port, (node) => node.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)).catch(
          () => undefined,
        );
        if (Array.isArray(answer)) return Number(answer[1]);
      }
      throw new Error("no sentinel answers");
    };
    await waitFor(async () => ((await replicating(replicaPort)) ? true : undefined), 30_000);
    // Ready once every sentinel knows the replica and the other sentinels, so a failover can be agreed.
    await waitFor(async () => {
      for (const port of sentinelPorts) {
        const master = (await withNode(port, (node) => node.call("SENTINEL", "MASTER", name)).catch(
          () => [],
        )) as string[];
        const field = (key: string) => Number(master[master.indexOf(key) + 1]);
        if (field("num-slaves") < 1 || field("num-other-sentinels") < 2) return undefined;
      }
      return true;
    }, 30_000);
    return {
      sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(","),
      name,
      kill: (port) => group.kill(port),
      pid: (port) => group.pid(port),
      restart: (port) => group.restart(port),
      stop: () => group.stop(),
      master: askSentinel,
    };
  } catch (err) {
    await group.stop();
    throw err;
  }
}

/** Runs `use` on a short-lived connection to the node on `port`. */
async function withNode<T>(port: number, use: (node: Redis) => Promise<T>): Promise<T> {
  const node = new Redis(port, "127.0.0.1", {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
  });
  node.on("error", () => {});
  try {
    await node.connect();
    return await use(node);
  } finally {
    node.disconnect();
  }
}

/** Whether the node on `port` is a master, or a replica whose link to its master is up. */
async function replicating(port: number): Promise<boolean> {
  const info = await withNode(port, (node) => node.info("replication")).catch(() => "");
  return info.includes("role:master") || info.includes("master_link_status:up");
}

/** The process id of the server answering on `port`, if one answers. */
async function serverPid(port: number): Promise<number | undefined> {
  const info = await withNode(port, (node) => node.info("server")).catch(() => "");
  const pid = /process_id:(\d+)/.exec(info)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

async function ping(port: number): Promise<boolean> {
  return withNode(port, (node) => node.ping()).then(
    () => true,
    () => false,
  );
}

/** Polls `check` until it returns a value, failing after `timeoutMs`. */
async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
