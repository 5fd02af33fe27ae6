import { Writable } from "node:stream";
import { createLogger, type Logger } from "../logger.js";

/** A logger whose lines are kept in memory, so tests can assert on what was (not) logged. */
export function memoryLogger(service = "test"): { logger: Logger; lines: () => string[] } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const logger = createLogger({ service, level: "debug", destination });
  return {
    logger,
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((l) => l !== ""),
  };
}
