import { pino } from "pino";
import { ConfigError, type Env, type IdentityConfig, type LogLevel, type RedisConfig } from "./config.js";
import { type Identity, openIdentity } from "./identity/identity.js";
import { createLogger, type Logger } from "./logger.js";
import { connectRedis, type RedisClient } from "./redis.js";
import { startTracing, type Tracing } from "./tracing/start.js";

/** What every service's `loadConfig` returns at least. */
export interface ServiceConfig {
  logLevel: LogLevel;
}

/** What a started service gives back so that a signal can stop it. */
export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * Runs a service as the process's main. The configuration is read first, so a bad value (the
 * log level included) fails with one line naming the variable, then the logger is built at the
 * configured level and handed to `start`, and tracing is set up from the `OTEL_*` variables
 * (`startTracing`) before the service builds anything. A failed start logs one clear line and
 * exits 1; SIGTERM or SIGINT stops the service gracefully, flushes its spans and exits 0; a
 * second signal exits at once. So does the end of the IPC channel to the supervisor that
 * started it, if any.
 */
export async function runMain<Config extends ServiceConfig>(
  service: string,
  loadConfig: (env: Env) => Config,
  start: (config: Config, logger: Logger) => Promise<Stoppable>,
): Promise<void> {
  let logger = createLogger({ service });
  let stoppable: Stoppable;
  let tracing: Tracing | undefined;
  try {
    const config = loadConfig(process.env);
    logger = createLogger({ service, level: config.logLevel });
    tracing = startTracing(service, process.env, logger);
    stoppable = await start(config, logger);
  } catch (err) {
    if (err instanceof ConfigError) logger.fatal({ variable: err.variable }, `configuration error: ${err.message}`);
    else logger.fatal({ err }, `failed to start: ${err instanceof Error ? err.message : String(err)}`);
    await tracing?.shutdown();
    process.exit(1);
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal, exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    stoppable.stop().then(
      async () => {
        await tracing?.shutdown();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Started by a supervisor over an IPC channel (`hookmesh start`): the channel closes when the
  // supervisor dies, even by SIGKILL, which no signal tells a child; the service then stops as
  // on SIGTERM instead of living on with its ports held. Unreferenced, the channel keeps no
  // service alive by itself.
  if (process.channel) {
    process.channel.unref();
    process.once("disconnect", () => {
      // The supervisor read this process's output: a write to that broken pipe would only be
      // retried, and hold up the shutdown, so the rest goes nowhere.
      muteLogger(logger);
      onSignal("SIGTERM");
    });
  }
}

/** Makes `logger`, and every child of it (they share its destination), write nothing from now on. */
function muteLogger(logger: Logger): void {
  const destination = (logger as unknown as Record<symbol, { write(line: string): boolean }>)[pino.symbols.streamSym];
  if (destination) destination.write = () => true;
}

/** A stateful service's identity (undefined in insecure mode) and its Redis connection. */
export interface IdentityAndRedis {
  identity: Identity | undefined;
  redis: RedisClient;
}

/**
 * Opens a service's identity, then connects its Redis. The identity comes first, so that a
 * certificate and key that do not belong together fail the start before any connection; when
 * Redis cannot be reached, the identity (and its watch on its files) is closed again.
 */
export async function openIdentityAndRedis(
  config: { identity: IdentityConfig; redis: RedisConfig },
  logger: Logger,
  onReadyChange?: (ready: boolean) => void,
): Promise<IdentityAndRedis> {
  const identity = openIdentity(config.identity, logger);
  try {
    const redis = await connectRedis({ ...config.redis, logger, ...(onReadyChange && { onReadyChange }) });
    return { identity, redis };
  } catch (err) {
    identity?.close();
    throw err;
  }
}
