import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { describeIds, spiffeIdsOf } from "./spiffe.js";

/** Where an identity's certificate, private key and trusted CA bundle are. */
export interface IdentityFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** One validated certificate, its key and the CAs to trust, in PEM. */
export interface IdentityMaterial {
  cert: string;
  key: string;
  ca: string;
  /** Hex, as OpenSSL prints it. */
  serialNumber: string;
  notAfter: Date;
}

/** The files do not hold a usable identity; the message says why, without key material. */
export class IdentityError extends Error {
  override name = "IdentityError";
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
/** Longest chain from a leaf through intermediates to a trusted CA that is followed. */
const MAX_CHAIN = 8;

/**
 * Reads an identity and checks it before it is used: the certificate names exactly `id`, is
 * valid now, matches the key, and chains (through intermediates in the certificate file) to a
 * CA in the bundle; Node accepts the three together. A pair caught mid-rotation (a new key
 * beside the old certificate) fails here instead of breaking new connections.
 */
export function readIdentityMaterial(files: IdentityFiles, id: string, now = new Date()): IdentityMaterial {
  const cert = read(files.certFile);
  const key = read(files.keyFile);
  const ca = read(files.caFile);
  const chain = certificates(cert, files.certFile);
  const anchors = certificates(ca, files.caFile);
  const leaf = chain[0]!;
  const ids = spiffeIdsOf(leaf.subjectAltName);
  if (ids.length !== 1 || ids[0] !== id) {
    throw new IdentityError(`${files.certFile}: expected ${id}, the certificate names ${describeIds(ids)}`);
  }
  if (now < new Date(leaf.validFrom) || now > new Date(leaf.validTo)) {
    throw new IdentityError(`${files.certFile}: not valid now (valid from ${leaf.validFrom} to ${leaf.validTo})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new IdentityError(`${files.keyFile}: not a PEM private key`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new IdentityError(`${files.keyFile}: does not match the certificate in ${files.certFile}`);
  }
  if (!chainsTo(chain, anchors)) {
    throw new IdentityError(`${files.certFile}: not issued by a CA in ${files.caFile}`);
  }
  try {
    createSecureContext({ cert, key, ca });
  } catch (err) {
    throw new IdentityError(`${files.certFile}: rejected by TLS: ${(err as Error).message}`);
  }
  return { cert, key, ca, serialNumber: leaf.serialNumber, notAfter: new Date(leaf.validTo) };
}

function read(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new IdentityError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** Every certificate in a PEM file, in order; at least one. */
function certificates(pem: string, path: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new IdentityError(`${path}: no PEM certificate`);
  try {
    return blocks.map((block) => new X509Certificate(block));
  } catch {
    throw new IdentityError(`${path}: a certificate cannot be parsed`);
  }
}

/** Whether `issuer` signed `cert`. */
export function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function chainsTo(chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): boolean {
  let current = chain[0]!;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (anchors.some((anchor) => issued(anchor, current))) return true;
    const next = chain.find((candidate) => candidate !== current && issued(candidate, current));
    if (next === undefined) return false;
    current = next;
  }
  return false;
}
