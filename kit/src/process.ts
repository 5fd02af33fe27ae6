import type { Logger } from "./logger.js";
import { ConfigError } from "./config.js";

/** What a started service gives back so that a signal can stop it. */
export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * Runs a service's start function as the process's main: a failed start (bad config,
 * unreachable dependency) logs one clear line and exits 1; SIGTERM or SIGINT stops it
 * gracefully and exits 0; a second signal exits at once.
 */
export async function runMain(logger: Logger, start: () => Promise<Stoppable>): Promise<void> {
  let service: Stoppable;
  try {
    service = await start();
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
    service.stop().then(
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
