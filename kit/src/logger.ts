import { type Logger, pino } from "pino";
import { traceLogFields } from "./tracing/context.js";

export type { Logger } from "pino";

/**
 * Paths that may carry credentials. Redacted wherever they appear in a log object, so a
 * careless `log.info({ headers })` cannot leak a secret.
 */
const redactPaths = [
  "*.authorization",
  "*.Authorization",
  "*.cookie",
  "*.token",
  "*.secret",
  "*.password",
  "headers.authorization",
  'headers["x-hub-signature-256"]',
  'headers["x-hub-signature"]',
  'headers["x-slack-signature"]',
  'headers["sentry-hook-signature"]',
];

export interface LoggerOptions {
  /** Service name, on every line. */
  service: string;
  /** pino level; `silent` in tests that assert on nothing logged. */
  level?: string;
  /** Where lines go; stdout by default. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service },
      redact: { paths: redactPaths, censor: "[redacted]" },
      // Every line written while a span is active names its trace_id and span_id.
      mixin: traceLogFields,
    },
    options.destination,
  );
}
