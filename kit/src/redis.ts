import { createHash } from "node:crypto";
import { type ChainableCommander, Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import type { RedisTopology } from "./config.js";
import type { Logger } from "./logger.js";

/** A service's Redis connection: one server or Sentinel's master (`Redis`), or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisConnectOptions {
  /** The server; with a `topology`, only its user, password and `rediss:` (TLS) are used. */
  url: string;
  /** The variable the URL came from, named in the error when Redis cannot be reached. */
  variable: string;
  /** The ACL user's password, when it is not in the URL. */
  password?: string;
  /** A cluster's seed nodes or the sentinels naming the master; absent for one server. */
  topology?: RedisTopology;
  logger: Logger;
  /** Called with true when the connection is ready and false when it is lost. */
  onReadyChange?: (ready: boolean) => void;
  /** How long the first connection may take before start-up fails. */
  connectTimeoutMs?: number;
}

/** Redis could not be reached at start-up. */
export class RedisUnreachableError extends Error {
  override name = "RedisUnreachableError";
}

/**
 * Connects to Redis and waits until it is ready, so a service refuses to start rather than
 * serve without its store. Afterwards ioredis reconnects on its own (following a cluster's
 * slots, or asking the sentinels for the master again); commands sent while the connection
 * is down fail at once (no offline queue) instead of hanging the RPC that sent them.
 */
export async function connectRedis(options: RedisConnectOptions & { topology?: undefined }): Promise<Redis>;
export async function connectRedis(options: RedisConnectOptions): Promise<RedisClient>;
export async function connectRedis(options: RedisConnectOptions): Promise<RedisClient> {
  const { logger, onReadyChange, topology } = options;
  const started = { value: false };
  const redis = createClient(options, started);
  let connected = false;
  let outage = false;
  let lastError: NodeJS.ErrnoException | undefined;
  redis.on("ready", () => {
    if (outage) logger.info("redis connection restored");
    connected = true;
    outage = false;
    onReadyChange?.(true);
  });
  redis.on("close", () => onReadyChange?.(false));
  // "reconnecting" follows only an unintended close (for a cluster: of every node), so it is
  // what marks an outage; before the first connection, the failed start-up says it instead.
  redis.on("reconnecting", () => {
    if (!outage && connected)
      logger.warn({ err: lastError?.code ?? lastError?.message }, "redis connection lost, reconnecting");
    outage = true;
  });
  // ioredis reports every failed reconnect as an error event; the lines above say what an
  // operator needs, so these only go to debug.
  redis.on("error", (err: NodeJS.ErrnoException) => {
    lastError = err;
    logger.debug({ err: err.message }, "redis error");
  });
  if (redis instanceof Cluster) {
    // One node lost is a failover in the making, not an outage: its replica takes its slots
    // over and the client follows; the commands in between fail and are retried by their sender.
    redis.on("node error", (err: NodeJS.ErrnoException, node: string) => {
      lastError = err;
      logger.debug({ err: err.message, node }, "redis cluster node error");
    });
    // Nodes also leave the pool at start (the seeds give way to the cluster's view) and at close.
    redis.on("-node", (node: Redis) => logger.debug({ node: nodeName(node) }, "redis cluster node left"));
  }
  try {
    await redis.connect();
    started.value = true;
  } catch (err) {
    redis.disconnect();
    const cause = lastError ?? (err as NodeJS.ErrnoException);
    const reason = cause.code ?? cause.message;
    const where =
      topology === undefined
        ? `at ${redactUrl(options.url)}`
        : topology.kind === "cluster"
          ? `cluster at ${topology.nodes.map(endpointName).join(",")}`
          : `master "${topology.name}" from the sentinels at ${topology.sentinels.map(endpointName).join(",")}`;
    throw new RedisUnreachableError(
      `cannot reach Redis ${where} (${reason}); start Redis or set ${topology?.variable ?? options.variable}`,
    );
  }
  return redis;
}

/** The client for the options' mode, not yet connected. */
function createClient(options: RedisConnectOptions, started: { value: boolean }): RedisClient {
  const common = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: options.connectTimeoutMs ?? 5_000,
    retryStrategy: (times: number) => Math.min(100 * 2 ** times, 2_000),
  } satisfies RedisOptions;
  const { topology } = options;
  if (topology === undefined) return new Redis(withPassword(options.url, options.password), common);
  const url = new URL(options.url);
  const credentials = {
    ...(url.username && { username: decodeURIComponent(url.username) }),
    ...((options.password ?? url.password) && { password: options.password ?? decodeURIComponent(url.password) }),
    ...(url.protocol === "rediss:" && { tls: {} }),
  } satisfies RedisOptions;
  if (topology.kind === "sentinel") {
    const db = Number(url.pathname.slice(1) || 0);
    return new Redis({
      ...common,
      ...credentials,
      db,
      sentinels: topology.sentinels,
      name: topology.name,
      // Before the first connection, sentinels that do not answer fail the start-up (ioredis
      // would retry them forever); afterwards they are asked again like a lost server.
      sentinelRetryStrategy: (times: number) => (started.value ? common.retryStrategy(times) : null),
    });
  }
  const { lazyConnect, enableOfflineQueue, retryStrategy, ...nodeOptions } = common;
  return new Cluster(topology.nodes, {
    lazyConnect,
    enableOfflineQueue,
    clusterRetryStrategy: retryStrategy,
    redisOptions: { ...nodeOptions, ...credentials },
  } satisfies ClusterOptions);
}

/**
 * A second connection like `client`, with `options` over its own: for a blocking or
 * subscribing connection beside the shared one (ioredis spells duplicate differently for a
 * cluster, whose per-node options sit under `redisOptions`).
 */
export function duplicateRedis(client: RedisClient, options: RedisOptions): RedisClient {
  if (!(client instanceof Cluster)) return client.duplicate(options);
  const { lazyConnect, enableOfflineQueue, ...redisOptions } = options;
  return client.duplicate([], {
    ...(lazyConnect !== undefined && { lazyConnect }),
    ...(enableOfflineQueue !== undefined && { enableOfflineQueue }),
    redisOptions,
  });
}

/** Fewer replicas than asked for acknowledged a write within the timeout; the write may be lost in a failover. */
export class ReplicasNotAcknowledgedError extends Error {
  override name = "ReplicasNotAcknowledgedError";
}

/** How many replicas must acknowledge a write, and how long to wait for them (Redis `WAIT`). */
export interface WaitReplicas {
  count: number;
  timeoutMs: number;
}

/**
 * Sends the commands `build` adds as one pipeline and, when `wait` asks for replicas, `WAIT`
 * at its end: on the same connection, so it covers these writes (and every earlier one on it),
 * and on a cluster to the master owning the pipeline's slot, because ioredis sends a
 * cluster pipeline whole to the node of its keys (a `WAIT` sent alone, having no key, would
 * go to any node and answer for nothing). Returns the commands' replies; a failed command
 * throws its error; too few replicas throw ReplicasNotAcknowledgedError.
 */
export async function execWaitingForReplicas(
  client: RedisClient,
  build: (pipeline: ChainableCommander) => void,
  wait: WaitReplicas | undefined,
): Promise<unknown[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await execOnce(client, build, wait);
    } catch (err) {
      // ioredis follows a MOVED slot for a single command and for a pipeline of reads, but
      // a pipeline holding WAIT (which answered) gets the redirection back: the slot's
      // commands did not run, so they are sent again once the client knows the new owner.
      if (!(client instanceof Cluster) || !/^MOVED /.test((err as Error).message) || attempt >= MAX_REDIRECTIONS) {
        throw err;
      }
      await new Promise<void>((resolve) => client.refreshSlotsCache(() => resolve()));
    }
  }
}

/** How often a pipeline follows its slot to another node before it gives up (ioredis's own default is 16). */
const MAX_REDIRECTIONS = 5;

async function execOnce(
  client: RedisClient,
  build: (pipeline: ChainableCommander) => void,
  wait: WaitReplicas | undefined,
): Promise<unknown[]> {
  const pipeline = client.pipeline();
  build(pipeline);
  const commands = pipeline.length;
  if (wait) pipeline.wait(wait.count, wait.timeoutMs);
  const replies = (await pipeline.exec()) ?? [];
  const results: unknown[] = [];
  for (const [err, result] of replies.slice(0, commands)) {
    if (err) throw err;
    results.push(result);
  }
  if (wait) {
    const [err, acknowledged] = replies[commands] ?? [new Error("no reply to WAIT")];
    if (err) throw err;
    if ((acknowledged as number) < wait.count) {
      throw new ReplicasNotAcknowledgedError(
        `${acknowledged} of ${wait.count} replicas acknowledged the write within ${wait.timeoutMs} ms`,
      );
    }
  }
  return results;
}

/**
 * Waits until `wait.count` replicas hold every write this client made so far to the node
 * owning `key` (any key of the service's prefix, which in cluster mode is one hash slot).
 */
export async function waitForReplicas(client: RedisClient, key: string, wait: WaitReplicas): Promise<void> {
  await execWaitingForReplicas(client, (pipeline) => pipeline.exists(key), wait);
}

const shas = new Map<string, string>();

/**
 * Runs a Lua script by its SHA-1 (EVALSHA), sending its text only when this Redis does not
 * have it yet: a script is sent once per Redis, not with every call.
 * With `wait`, the script's writes must reach that many replicas before it resolves (see
 * kit's execWaitingForReplicas): what an acknowledgment promises must survive a failover.
 */
export async function runScript(
  redis: RedisClient,
  script: string,
  keys: readonly string[],
  args: ReadonlyArray<string | number | Buffer>,
  wait?: WaitReplicas,
): Promise<unknown> {
  const known = shaOf(script);
  if (wait === undefined) {
    return redis.evalsha(known, keys.length, ...keys, ...args).catch((err: Error) => {
      if (!err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(script, keys.length, ...keys, ...args);
    });
  }
  const [reply] = await execWaitingForReplicas(
    redis,
    (pipeline) => pipeline.evalsha(known, keys.length, ...keys, ...args),
    wait,
  ).catch((err: Error) => {
    if (!err.message.startsWith("NOSCRIPT")) throw err;
    return execWaitingForReplicas(redis, (pipeline) => pipeline.eval(script, keys.length, ...keys, ...args), wait);
  });
  return reply;
}

/** `runScript` for a script whose reply carries bytes (a protobuf record): its strings come back as Buffers. */
export async function runScriptBuffer(
  redis: RedisClient,
  script: string,
  keys: readonly string[],
  args: ReadonlyArray<string | number | Buffer>,
): Promise<unknown> {
  return redis.callBuffer("EVALSHA", shaOf(script), keys.length, ...keys, ...args).catch((err: Error) => {
    if (!err.message.startsWith("NOSCRIPT")) throw err;
    return redis.callBuffer("EVAL", script, keys.length, ...keys, ...args);
  });
}

function shaOf(script: string): string {
  let sha = shas.get(script);
  if (sha === undefined) {
    sha = createHash("sha1").update(script).digest("hex");
    shas.set(script, sha);
  }
  return sha;
}

function endpointName(endpoint: { host: string; port: number }): string {
  return `${endpoint.host}:${endpoint.port}`;
}

function nodeName(node: Redis): string {
  return `${node.options.host}:${node.options.port}`;
}

/** The URL as ioredis takes a user's password: in the URL, where a username there cannot shadow it. */
function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const parsed = new URL(url);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

/** The URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}
