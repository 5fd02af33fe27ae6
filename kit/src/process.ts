import { ConfigError, type Env, type LogLevel } from "./config.js";
import { createLogger, type Logger } from "./logger.js";

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
 * configured level and handed to `start`. A failed start logs one clear line and exits 1;
 * SIGTERM or SIGINT stops the service gracefully and exits 0; a second signal exits at once.
 */
export async function runMain<Config extends ServiceConfig>(
  service: string,
  loadConfig: (env: Env) => Config,
  start: (config: Config, logger: Logger) => Promise<Stoppable>,
): Promise<void> {
  let logger = createLogger({ service });
  let stoppable: Stoppable;
  try {
    const config = loadConfig(process.env);
    logger = createLogger({ service, level: config.logLevel });
    stoppable = await start(config, logger);
  } catch (err) {
    if (err instanceof ConfigError) logger.fatal({ variable: err.variable }, `configuration error: ${err.message}`);
    else logger.fatal({ err }, `failed to start: ${err instanceof Error ? err.message : String(err)}`);
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
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
