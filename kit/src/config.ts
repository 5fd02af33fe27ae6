import { readFileSync } from "node:fs";
import type { TlsOptions } from "./serve.js";

/** A configuration value is missing or malformed; the message names the variable to fix. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

function present(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === "" ? undefined : value;
}

/** A string variable, or `fallback` when unset or blank. */
export function envString(env: Env, name: string, fallback: string): string {
  return present(env, name) ?? fallback;
}

/** An integer variable within [min, max], or `fallback` when unset. */
export function envInt(
  env: Env,
  name: string,
  fallback: number,
  range: { min?: number; max?: number } = {},
): number {
  const raw = present(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = range;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(name, `expected an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

/** A TCP port (0 picks a free one). */
export function envPort(env: Env, name: string, fallback: number): number {
  return envInt(env, name, fallback, { min: 0, max: 65535 });
}

/** An absolute http(s) or redis(s) URL, returned without a trailing slash. */
export function envUrl(
  env: Env,
  name: string,
  fallback: string,
  protocols: readonly string[] = ["http:", "https:"],
): string {
  const raw = present(env, name) ?? fallback;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `expected an absolute URL, got "${raw}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(name, `expected a ${protocols.join(" or ")} URL, got "${url.protocol}"`);
  }
  return raw.replace(/\/+$/, "");
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `LOG_LEVEL`: one of pino's levels, `info` when unset. */
export function envLogLevel(env: Env, name = "LOG_LEVEL"): LogLevel {
  const raw = (present(env, name) ?? "info").toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${LOG_LEVELS.join(", ")}, got "${raw}"`);
  }
  return raw as LogLevel;
}

/** A boolean variable: 1/true/yes or 0/false/no. */
export function envBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = present(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (["1", "true", "yes"].includes(raw)) return true;
  if (["0", "false", "no"].includes(raw)) return false;
  throw new ConfigError(name, `expected 1/true/yes or 0/false/no, got "${raw}"`);
}

/**
 * A secret from `NAME`, or from the file named by `NAME_FILE` (how container platforms
 * mount secrets). Comma-separated values become a list, so secrets can be rotated by
 * listing the new one beside the old. Values never appear in errors.
 */
export function envSecrets(env: Env, name: string): string[] {
  const direct = present(env, name);
  const fileVariable = `${name}_FILE`;
  const file = present(env, fileVariable);
  if (direct !== undefined && file !== undefined) {
    throw new ConfigError(name, `set either ${name} or ${fileVariable}, not both`);
  }
  const raw = file === undefined ? direct : readConfigFile(fileVariable, file);
  return (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/**
 * TLS for a service port from `{PREFIX}_TLS_CERT_FILE` and `{PREFIX}_TLS_KEY_FILE`, plus
 * `{PREFIX}_TLS_CA_FILE` to require client certificates (mTLS). Unset means cleartext.
 */
export function envTls(env: Env, prefix: string): TlsOptions | undefined {
  const [certVar, keyVar, caVar] = ["CERT", "KEY", "CA"].map((part) => `${prefix}_TLS_${part}_FILE`) as [string, string, string];
  const certFile = present(env, certVar);
  const keyFile = present(env, keyVar);
  if (certFile === undefined && keyFile === undefined) {
    if (present(env, caVar) !== undefined) throw new ConfigError(caVar, `needs ${certVar} and ${keyVar}`);
    return undefined;
  }
  if (certFile === undefined) throw new ConfigError(certVar, `is required with ${keyVar}`);
  if (keyFile === undefined) throw new ConfigError(keyVar, `is required with ${certVar}`);
  const caFile = present(env, caVar);
  return {
    cert: readConfigFile(certVar, certFile),
    key: readConfigFile(keyVar, keyFile),
    ...(caFile === undefined ? {} : { ca: readConfigFile(caVar, caFile) }),
  };
}

function readConfigFile(variable: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as `500ms`, `30s`, `5m`, `24h` or `7d` (a bare number is milliseconds), in ms. */
export function envDuration(env: Env, name: string, fallback: string): number {
  const raw = present(env, name) ?? fallback;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(raw);
  if (!match) throw new ConfigError(name, `expected a duration such as 30s, 5m, 24h or 7d, got "${raw}"`);
  const ms = Number(match[1]) * DURATION_UNITS_MS[match[2] ?? "ms"]!;
  if (ms <= 0 || !Number.isSafeInteger(Math.round(ms))) throw new ConfigError(name, `expected a positive duration, got "${raw}"`);
  return Math.round(ms);
}

/** A comma-separated list, trimmed, without empty items. */
export function envList(env: Env, name: string, fallback: readonly string[] = []): string[] {
  const raw = present(env, name);
  if (raw === undefined) return [...fallback];
  return raw
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** Where a secret came from (`NAME` or `NAME_FILE`) and its value now ("" for an empty file). */
export interface SecretSource {
  variable: string;
  value: string;
}

/**
 * Checks that a secret read later (and re-read on rotation) by a Credential has a sensible
 * source: not both `NAME` and `NAME_FILE`, and a `NAME_FILE` that can be read. A mistyped path
 * then fails the start instead of quietly leaving the service without its credential. Returns
 * where it came from and its value now, for a service that must check the value itself (say,
 * that a key parses); undefined when neither is set. Never put the value in the configuration.
 */
export function checkSecretSource(env: Env, variable: string): SecretSource | undefined {
  const fileVariable = `${variable}_FILE`;
  const file = present(env, fileVariable);
  const direct = present(env, variable);
  if (file === undefined) return direct === undefined ? undefined : { variable, value: direct };
  if (direct !== undefined) throw new ConfigError(variable, `set either ${variable} or ${fileVariable}, not both`);
  return { variable: fileVariable, value: readConfigFile(fileVariable, file).trim() };
}
