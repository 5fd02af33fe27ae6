import { accessSync, constants, readFileSync } from "node:fs";
import { BlockList, isIP } from "node:net";
import { resolve } from "node:path";
import { PeerSyntaxError, type PeerTarget, parseHostPort, parsePeer } from "./client/peer.js";
import { FieldError } from "./errors.js";
import { devIdentityFiles } from "./identity/dev.js";
import type { IdentityFiles } from "./identity/material.js";
import { isIdentityName, isTrustDomain, spiffeId } from "./identity/spiffe.js";

/** A configuration value is missing or malformed; the message names the variable to fix. */
export class ConfigError extends FieldError {
  override name = "ConfigError";
  /** The variable to fix. */
  get variable(): string {
    return this.field;
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
export function envInt(env: Env, name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
  const raw = present(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = range;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(name, `expected an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

/** A finite number (decimals allowed, e.g. dollars) within [min, max], or `fallback` when unset. */
export function envNumber(
  env: Env,
  name: string,
  fallback: number,
  range: { min?: number; max?: number } = {},
): number {
  const raw = present(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  const { min = -Number.MAX_VALUE, max = Number.MAX_VALUE } = range;
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(name, `expected a number from ${min} to ${max}, got "${raw}"`);
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

/** A Redis node or sentinel to start from. */
export interface RedisEndpoint {
  host: string;
  port: number;
}

/**
 * How a service reaches Redis besides its URL: one server (the URL's host), a Redis Cluster
 * found from seed nodes, or the master a group of Sentinels names. `variable` is the one that
 * chose the mode, named in errors.
 */
export type RedisTopology =
  | { kind: "cluster"; nodes: RedisEndpoint[]; variable: string }
  | { kind: "sentinel"; sentinels: RedisEndpoint[]; name: string; variable: string };

/** Where a service keeps its state in Redis, and as whom it connects. */
export interface RedisConfig {
  /** The server in single mode; in cluster and sentinel mode only its user, password and `rediss:` count. */
  url: string;
  /** The variable the URL came from, named when Redis cannot be reached. */
  variable: string;
  /** Every key the service writes starts with it; a Redis ACL user can be limited to it. */
  keyPrefix: string;
  /** The ACL user's password, when it is not in the URL. */
  password?: string;
  /** A cluster or sentinels; absent for one Redis server. */
  topology?: RedisTopology;
  /**
   * Replicas that must hold an acknowledged write before it is acknowledged (Redis `WAIT`);
   * absent when nothing waits (`REDIS_WAIT_REPLICAS=0`).
   */
  waitReplicas?: { count: number; timeoutMs: number; variable: string };
}

/**
 * A service's Redis: `{PREFIX}_REDIS_URL` (falling back to the shared `REDIS_URL`), the
 * password of its ACL user from `{PREFIX}_REDIS_PASSWORD` or `_FILE` (kept out of the URL, so
 * a URL can be logged and a mounted secret rotated), and its key prefix from
 * `{PREFIX}_REDIS_PREFIX`. `hookmesh redis-acl` prints the ACL rules that confine each user
 * to its prefix.
 *
 * `REDIS_CLUSTER_NODES` (seed `host:port`s) puts the service on a Redis Cluster, and
 * `REDIS_SENTINELS` with `REDIS_SENTINEL_NAME` on the master those Sentinels name; each can be
 * set per service with the `{PREFIX}_` in front, like the URL. In cluster mode a service's
 * keys must share one hash slot (its Lua scripts, transactions and BullMQ's queue touch many
 * keys at once), so the default prefix becomes a hash tag (`{hookmesh:tasks}:`) and a
 * configured one without a `{…}` tag is refused. `REDIS_WAIT_REPLICAS` (and
 * `REDIS_WAIT_TIMEOUT_MS`) make acknowledged writes wait for that many replicas.
 */
export function envRedis(env: Env, prefix: string, defaultKeyPrefix: string): RedisConfig {
  const own = (name: string) => (present(env, `${prefix}_${name}`) === undefined ? name : `${prefix}_${name}`);
  const variable = own("REDIS_URL");
  const url = envUrl(env, variable, "redis://127.0.0.1:6379", ["redis:", "rediss:"]);
  const passwordVariable = `${prefix}_REDIS_PASSWORD`;
  const passwords = envSecrets(env, passwordVariable);
  if (passwords.length > 1) throw new ConfigError(passwordVariable, "expected one password, got a list");
  if (passwords.length === 1 && new URL(url).password !== "") {
    throw new ConfigError(passwordVariable, `${variable} has a password already; set it in one place`);
  }
  const topology = envRedisTopology(env, own, variable, url);
  const prefixVariable = `${prefix}_REDIS_PREFIX`;
  const clustered = topology?.kind === "cluster";
  const keyPrefix = envString(env, prefixVariable, clustered ? hashTagged(defaultKeyPrefix) : defaultKeyPrefix);
  if (/[*?[\]\\\s]/.test(keyPrefix))
    throw new ConfigError(prefixVariable, "must not contain glob characters or spaces");
  if (clustered && !hasHashTag(keyPrefix)) {
    throw new ConfigError(
      prefixVariable,
      `in cluster mode (${topology.variable}) the prefix must hold a hash tag, e.g. "${hashTagged(keyPrefix)}", so that all of the service's keys share one slot`,
    );
  }
  const waitVariable = own("REDIS_WAIT_REPLICAS");
  const count = envInt(env, waitVariable, 0, { min: 0, max: 16 });
  const timeoutMs = envInt(env, own("REDIS_WAIT_TIMEOUT_MS"), 1_000, { min: 1, max: 60_000 });
  return {
    url,
    variable,
    keyPrefix,
    ...(passwords.length === 1 && { password: passwords[0] }),
    ...(topology && { topology }),
    ...(count > 0 && { waitReplicas: { count, timeoutMs, variable: waitVariable } }),
  };
}

/** Cluster seeds or sentinels, whichever is set (never both); undefined for one server. */
function envRedisTopology(
  env: Env,
  own: (name: string) => string,
  urlVariable: string,
  url: string,
): RedisTopology | undefined {
  const nodesVariable = own("REDIS_CLUSTER_NODES");
  const sentinelsVariable = own("REDIS_SENTINELS");
  const nameVariable = own("REDIS_SENTINEL_NAME");
  const nodes = envEndpoints(env, nodesVariable);
  const sentinels = envEndpoints(env, sentinelsVariable);
  const name = present(env, nameVariable);
  if (nodes && sentinels) {
    throw new ConfigError(sentinelsVariable, `set either ${nodesVariable} or ${sentinelsVariable}, not both`);
  }
  if (nodes) {
    if (name !== undefined) throw new ConfigError(nameVariable, `a cluster (${nodesVariable}) has no sentinel name`);
    if (!/^\/?0?$/.test(new URL(url).pathname)) {
      throw new ConfigError(urlVariable, `a cluster (${nodesVariable}) has only database 0; remove the URL's path`);
    }
    return { kind: "cluster", nodes, variable: nodesVariable };
  }
  if (sentinels) {
    if (name === undefined) {
      throw new ConfigError(nameVariable, `name the master the sentinels (${sentinelsVariable}) watch`);
    }
    return { kind: "sentinel", sentinels, name, variable: sentinelsVariable };
  }
  if (name !== undefined) throw new ConfigError(sentinelsVariable, `${nameVariable} is set; list the sentinels too`);
  return undefined;
}

/** Comma-separated `host:port`s; undefined when unset. */
function envEndpoints(env: Env, name: string): RedisEndpoint[] | undefined {
  const raw = present(env, name);
  if (raw === undefined) return undefined;
  const endpoints = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((entry) => {
      const endpoint = parseHostPort(entry);
      if (!endpoint) {
        throw new ConfigError(name, `expected comma-separated host:port entries, got "${entry.slice(0, 100)}"`);
      }
      return endpoint;
    });
  if (endpoints.length === 0) throw new ConfigError(name, "expected at least one host:port");
  return endpoints;
}

/**
 * Whether every key starting with `prefix` hashes by a tag inside it: Redis Cluster hashes
 * only what lies between a key's first `{` and the first `}` after it, when that is not empty.
 */
export function hasHashTag(prefix: string): boolean {
  const open = prefix.indexOf("{");
  return open >= 0 && prefix.indexOf("}", open + 1) > open + 1;
}

/** `hookmesh:tasks:` as a hash tag: `{hookmesh:tasks}:`. */
function hashTagged(prefix: string): string {
  return prefix.endsWith(":") ? `{${prefix.slice(0, -1)}}:` : `{${prefix}}`;
}

/** How a service proves who it is and checks who it talks to: mTLS with these files, or cleartext on loopback. */
export type IdentityConfig =
  | { insecure: true }
  | ({
      insecure: false;
      /** `spiffe://<trust domain>/<name>`. */
      id: string;
      name: string;
      trustDomain: string;
    } & IdentityFiles);

/** The addresses a service listens on and calls, by the variable that set each, for `envIdentity` to check. */
export interface IdentityEndpoints {
  /** Hosts the service binds, e.g. `{ TASKS_HOST: "0.0.0.0" }`. */
  listen?: Readonly<Record<string, string>>;
  /** Peer values of the services it calls, e.g. `{ TASKS_URL: "https://tasks-0:50051,https://tasks-1:50051" }`. */
  peers?: Readonly<Record<string, string>>;
}

const INSECURE = "HOOKMESH_INSECURE";

/** `HOOKMESH_INSECURE=1`: cleartext on loopback, no identities and so no authorization. */
export function envInsecure(env: Env): boolean {
  return envBool(env, INSECURE, false);
}

/** `HOOKMESH_HOME`, absolute: development identities (`tls/`) and Redis passwords (`redis/`); `.hookmesh` by default. */
export function envHome(env: Env): string {
  return resolve(envString(env, "HOOKMESH_HOME", ".hookmesh"));
}

/** `HOOKMESH_TRUST_DOMAIN`, the trust domain of every SPIFFE id; `hookmesh.local` by default. */
export function envTrustDomain(env: Env): string {
  const trustDomain = envString(env, "HOOKMESH_TRUST_DOMAIN", "hookmesh.local");
  if (!isTrustDomain(trustDomain)) {
    throw new ConfigError(
      "HOOKMESH_TRUST_DOMAIN",
      `expected lowercase letters, digits, ".", "-" and "_", got "${trustDomain}"`,
    );
  }
  return trustDomain;
}

/**
 * The identity of `name` (e.g. `tasks`, `operator`) within `HOOKMESH_TRUST_DOMAIN` (default
 * `hookmesh.local`): the certificate, key and CA bundle from `<NAME>_TLS_CERT_FILE`,
 * `<NAME>_TLS_KEY_FILE` and `<NAME>_TLS_CA_FILE` (all three or none), by default the
 * development files under `HOOKMESH_HOME` (`.hookmesh` in the working directory). The files
 * must be readable now; `openIdentity` reads and validates them. Every peer URL must be https.
 *
 * `HOOKMESH_INSECURE=1` turns mTLS off, and is refused unless every listening host and every
 * peer target (each URL, each `dns:///` host) is on loopback: cleartext never leaves the machine.
 */
export function envIdentity(env: Env, name: string, endpoints: IdentityEndpoints = {}): IdentityConfig {
  if (!isIdentityName(name)) throw new Error(`"${name}" is not an identity name`);
  const prefix = name.toUpperCase().replace(/[^A-Z0-9]/g, "_");
  const variables: Record<keyof IdentityFiles, string> = {
    certFile: `${prefix}_TLS_CERT_FILE`,
    keyFile: `${prefix}_TLS_KEY_FILE`,
    caFile: `${prefix}_TLS_CA_FILE`,
  };
  const set = Object.values(variables).filter((variable) => present(env, variable) !== undefined);
  const peers = peerTargets(endpoints.peers ?? {}, envInsecure(env));

  if (envInsecure(env)) {
    if (set.length > 0)
      throw new ConfigError(INSECURE, `turns TLS off, but ${set.join(", ")} asks for it; unset one or the other`);
    const cleartextOnly = `${INSECURE}=1 allows cleartext on loopback only`;
    for (const [variable, host] of Object.entries(endpoints.listen ?? {})) {
      if (!isLoopback(host)) throw new ConfigError(variable, `${cleartextOnly}: bind 127.0.0.1 or ::1, not "${host}"`);
    }
    for (const { variable, target } of peers) {
      if (target.kind === "url" && !target.origin.startsWith("http:"))
        throw new ConfigError(variable, `${cleartextOnly}: expected an http:// URL, got "${target.origin}"`);
      const host = target.kind === "url" ? new URL(target.origin).hostname : target.host;
      if (!isLoopback(host))
        throw new ConfigError(variable, `${cleartextOnly}: expected 127.0.0.1, ::1 or localhost, got "${host}"`);
    }
    return { insecure: true };
  }

  for (const { variable, target } of peers) {
    if (target.kind === "url" && !target.origin.startsWith("https:")) {
      throw new ConfigError(
        variable,
        `calls go over mTLS: expected an https:// URL, got "${target.origin}" (cleartext needs ${INSECURE}=1, on loopback)`,
      );
    }
  }
  const trustDomain = envTrustDomain(env);
  if (set.length > 0 && set.length < 3) {
    const missing = Object.values(variables).filter((variable) => !set.includes(variable));
    throw new ConfigError(missing[0]!, `is required with ${set.join(" and ")}`);
  }
  const development = set.length === 0;
  const files = development
    ? devIdentityFiles(envHome(env), name)
    : {
        certFile: present(env, variables.certFile)!,
        keyFile: present(env, variables.keyFile)!,
        caFile: present(env, variables.caFile)!,
      };
  for (const part of ["certFile", "keyFile", "caFile"] as const) {
    try {
      accessSync(files[part], constants.R_OK);
    } catch (err) {
      const hint = development ? "; create development identities with `npx hookmesh certs`, or set it" : "";
      throw new ConfigError(
        variables[part],
        `cannot read ${files[part]}: ${(err as NodeJS.ErrnoException).code ?? "error"}${hint}`,
      );
    }
  }
  return { insecure: false, id: spiffeId(trustDomain, name), name, trustDomain, ...files };
}

/** Every target of every peer value, with the variable that set it; a malformed value names its variable. */
function peerTargets(
  peers: Readonly<Record<string, string>>,
  insecure: boolean,
): { variable: string; target: PeerTarget }[] {
  return Object.entries(peers).flatMap(([variable, value]) => {
    try {
      return parsePeer(value, insecure ? "http:" : "https:").map((target) => ({ variable, target }));
    } catch (err) {
      if (err instanceof PeerSyntaxError) throw new ConfigError(variable, err.message);
      throw err;
    }
  });
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** Whether a host name or address (IPv6 possibly in brackets, as in URLs) stays on this machine. */
function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost") return true;
  const family = isIP(bare);
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? "ipv4" : "ipv6");
}

/** A file a configuration variable names, read whole; a failure names the variable. */
export function readConfigFile(variable: string, path: string): string {
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
  if (ms <= 0 || !Number.isSafeInteger(Math.round(ms)))
    throw new ConfigError(name, `expected a positive duration, got "${raw}"`);
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
