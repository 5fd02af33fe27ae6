import { Redis } from "ioredis";
import type { Logger } from "./logger.js";

export interface RedisConnectOptions {
  url: string;
  /** The variable the URL came from, named in the error when Redis cannot be reached. */
  variable: string;
  /** The ACL user's password, when it is not in the URL. */
  password?: string;
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
 * serve without its store. Afterwards ioredis reconnects on its own; commands sent while the
 * connection is down fail at once (no offline queue) instead of hanging the RPC that sent them.
 */
export async function connectRedis(options: RedisConnectOptions): Promise<Redis> {
  const { logger, onReadyChange } = options;
  const redis = new Redis(withPassword(options.url, options.password), {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: options.connectTimeoutMs ?? 5_000,
    retryStrategy: (times) => Math.min(100 * 2 ** times, 2_000),
  });
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
  // "reconnecting" follows only an unintended close, so it is what marks an outage; before the
  // first connection, the failed start-up says it instead.
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
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    const cause = lastError ?? (err as NodeJS.ErrnoException);
    const reason = cause.code ?? cause.message;
    throw new RedisUnreachableError(
      `cannot reach Redis at ${redactUrl(options.url)} (${reason}); start Redis or set ${options.variable}`,
    );
  }
  return redis;
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
