import { watch } from "node:fs";
import { dirname } from "node:path";
import type { PeerCertificate } from "node:tls";
import type { IdentityConfig } from "../config.js";
import type { Logger } from "../logger.js";
import { type IdentityMaterial, readIdentityMaterial } from "./material.js";
import { describeIds, spiffeIdsOf } from "./spiffe.js";

/** A service's or operator's X.509 identity, kept current as its files are rotated. */
export interface Identity {
  /** `spiffe://<trust domain>/<name>`. */
  readonly id: string;
  readonly name: string;
  readonly trustDomain: string;
  /** The validated certificate, key and CA bundle in use. */
  current(): IdentityMaterial;
  /** Calls `listener` each time a rotated identity has been validated and taken into use; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
  /** Stops watching the files. */
  close(): void;
}

export interface OpenIdentityOptions {
  /** How long the files must be quiet before they are read again: one rotation renames several. Default 250 ms. */
  debounceMs?: number;
}

/**
 * Reads and validates the identity that `envIdentity` configured, or returns undefined in
 * insecure mode. Its directories are watched (rotators replace files, often by swapping a
 * symlinked directory, so the directory is watched rather than the files): after a change
 * settles, the files are read and validated again, and a good new identity replaces the old
 * one for new connections. A bad one (a half-written pair, a certificate from another CA)
 * is logged and the old one kept. Throws when the files do not hold a valid identity at start.
 */
export function openIdentity(
  config: IdentityConfig,
  logger: Logger,
  options: OpenIdentityOptions = {},
): Identity | undefined {
  if (config.insecure) return undefined;
  const { id, name, trustDomain } = config;
  const log = logger.child({ identity: id });
  let material = readIdentityMaterial(config, id);
  const listeners = new Set<() => void>();
  let timer: NodeJS.Timeout | undefined;

  const reload = () => {
    let next: IdentityMaterial;
    try {
      next = readIdentityMaterial(config, id);
    } catch (err) {
      log.error(
        { reason: (err as Error).message, serialNumber: material.serialNumber },
        "rotated identity rejected; keeping the one in use",
      );
      return;
    }
    if (next.cert === material.cert && next.key === material.key && next.ca === material.ca) return;
    material = next;
    log.info({ serialNumber: next.serialNumber, notAfter: next.notAfter.toISOString() }, "identity rotated");
    for (const listener of listeners) {
      // Runs from a timer: a throw here would end the process over a certificate it could keep serving with.
      try {
        listener();
      } catch (err) {
        log.error({ err }, "taking the rotated identity into use failed");
      }
    }
  };
  const directories = [...new Set([config.certFile, config.keyFile, config.caFile].map((file) => dirname(file)))];
  const watchers = directories.map((directory) =>
    watch(directory, { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(reload, options.debounceMs ?? 250);
      timer.unref();
    }).on("error", (err) =>
      log.warn({ err, directory }, "stopped watching identity files; a rotation now needs a restart"),
    ),
  );
  log.info({ serialNumber: material.serialNumber, notAfter: material.notAfter.toISOString() }, "identity loaded");

  return {
    id,
    name,
    trustDomain,
    current: () => material,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
      listeners.clear();
    },
  };
}

/** The server presented another identity than the one the client was told to expect. */
export class ServerIdentityError extends Error {
  override name = "ServerIdentityError";
  constructor(
    readonly expected: string,
    readonly got: readonly string[],
  ) {
    super(`server identity mismatch: expected ${expected}, got ${describeIds(got)}`);
  }
}

/** What a client connection under an identity needs; fits HTTP/2 sessions and HTTPS requests alike. */
export interface ClientTlsOptions {
  cert: string;
  key: string;
  ca: string;
  checkServerIdentity(host: string, certificate: PeerCertificate): Error | undefined;
}

/**
 * TLS options for a connection from `identity` to the server `expected` (a SPIFFE id): the
 * identity's certificate is presented, the server's chain is checked against the CA bundle,
 * and its SPIFFE id, not its host name, decides whether it is the right server.
 */
export function clientTlsOptions(identity: Identity, expected: string): ClientTlsOptions {
  const { cert, key, ca } = identity.current();
  return {
    cert,
    key,
    ca,
    checkServerIdentity: serverIdentityCheck(expected),
  };
}

/**
 * A TLS `checkServerIdentity` that accepts the server whose certificate carries exactly the
 * SPIFFE id `expected`: for clients that present no certificate of their own (bearer tokens).
 */
export function serverIdentityCheck(
  expected: string,
): (host: string, certificate: PeerCertificate) => Error | undefined {
  return (_host, certificate) => {
    const ids = spiffeIdsOf(certificate.subjectaltname);
    return ids.length === 1 && ids[0] === expected ? undefined : new ServerIdentityError(expected, ids);
  };
}
