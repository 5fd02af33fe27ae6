import { createPrivateKey, type KeyObject, randomBytes, type webcrypto, X509Certificate } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type IdentityFiles, issued } from "./material.js";
import { isTrustDomain, spiffeId, spiffeIdsOf } from "./spiffe.js";
import type * as X509 from "./x509.js";

type CryptoKey = webcrypto.CryptoKey;

const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
const IDENTITY_DAYS = 90;
const CA_DAYS = 3650;
/** A certificate with less left than this is reissued on the next ensure. */
const RENEW_WITHIN_DAYS = 30;
/** Certificates start a little in the past, so a peer whose clock is behind accepts them. */
const BACKDATE_MS = 5 * 60_000;
/** A lock older than this was left by a process that died while writing. */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 60_000;
/** A file name: one path segment, as the identity's name becomes `<name>.crt`. */
const DEV_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** The development files of one identity under `home`: `tls/<name>.crt`, `tls/<name>.key`, `tls/ca.crt`. */
export function devIdentityFiles(home: string, name: string): IdentityFiles {
  const dir = join(home, "tls");
  return { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`), caFile: join(dir, "ca.crt") };
}

export interface DevIdentityOptions {
  /** `HOOKMESH_HOME`; the files go to its `tls/` directory. */
  home: string;
  trustDomain: string;
  /** One certificate per name, e.g. `gateway`, `tasks`, `operator`. */
  names: readonly string[];
  /** Reissues every identity's certificate and key now, even those still current; the CA is kept. */
  reissue?: boolean;
  /** The clock that expiry is judged and certificates are dated by. */
  now?: Date;
}

export type DevFileStatus = "created" | "renewed" | "current";

export interface DevIdentity {
  name: string;
  id: string;
  certFile: string;
  keyFile: string;
  notAfter: Date;
  status: DevFileStatus;
}

export interface DevIdentities {
  caFile: string;
  caStatus: DevFileStatus;
  identities: DevIdentity[];
}

interface DevCa {
  cert: X509Certificate;
  /** For signing with WebCrypto. */
  signingKey: CryptoKey;
}

/**
 * Makes sure a development CA and one certificate per name exist under `home/tls`, creating
 * what is missing and renewing what is invalid, no longer matches (another trust domain, a
 * new CA) or has less than 30 days left. The CA is valid ten years, so that renewing an
 * identity never changes what the peers trust. Identities are valid 90 days and carry their
 * SPIFFE id plus `localhost`, `127.0.0.1` and `::1`, so that standard tools verify the
 * servers. Keys are ECDSA P-256. Files are 0600 in a 0700 directory, written to a temporary file and
 * renamed, so a service watching them never reads half a file; a lock file keeps two
 * processes that ensure at once from mixing their CAs.
 */
export async function ensureDevIdentities(options: DevIdentityOptions): Promise<DevIdentities> {
  const { home, trustDomain, names } = options;
  if (!isTrustDomain(trustDomain)) throw new Error(`"${trustDomain}" is not a SPIFFE trust domain`);
  const invalid = names.filter((name) => !DEV_NAME.test(name));
  if (invalid.length > 0) throw new Error(`not a development identity name: ${invalid.join(", ")}`);
  const dir = join(home, "tls");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  // Loaded here, not with kit: only the CLI makes certificates, and the library costs every
  // process that loads it a noticeable start-up time.
  const x509 = await import("./x509.js");
  return withLock(join(dir, ".lock"), async () => {
    const now = options.now ?? new Date();
    const caFile = join(dir, "ca.crt");
    const caKeyFile = join(dir, "ca.key");
    const { ca, status: caStatus } = await ensureCa(x509, caFile, caKeyFile, now);
    const identities: DevIdentity[] = [];
    for (const name of names) {
      const files = devIdentityFiles(home, name);
      const id = spiffeId(trustDomain, name);
      identities.push({
        name,
        id,
        ...files,
        ...(await ensureIdentity(x509, files, id, ca, now, options.reissue ?? false)),
      });
    }
    return { caFile, caStatus, identities };
  });
}

async function ensureCa(
  x509: typeof X509,
  certFile: string,
  keyFile: string,
  now: Date,
): Promise<{ ca: DevCa; status: DevFileStatus }> {
  const existing = await readPair(certFile, keyFile);
  if (existing?.cert.ca && existing.cert.checkPrivateKey(existing.key) && !expiring(existing.cert, now)) {
    return { ca: { cert: existing.cert, signingKey: await signingKey(existing.key) }, status: "current" };
  }
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=hookmesh development CA",
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_DAYS * DAY_MS),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pem = cert.toString("pem");
  await writePair(certFile, pem, keyFile, await pemPrivateKey(keys.privateKey));
  return {
    ca: { cert: new X509Certificate(pem), signingKey: keys.privateKey },
    status: existing ? "renewed" : "created",
  };
}

async function ensureIdentity(
  x509: typeof X509,
  files: IdentityFiles,
  id: string,
  ca: DevCa,
  now: Date,
  reissue: boolean,
): Promise<{ notAfter: Date; status: DevFileStatus }> {
  const existing = await readPair(files.certFile, files.keyFile);
  if (existing && !reissue && isCurrent(existing.cert, existing.key, id, ca, now)) {
    return { notAfter: new Date(existing.cert.validTo), status: "current" };
  }
  const keys = await generateKeys();
  const notAfter = new Date(now.getTime() + IDENTITY_DAYS * DAY_MS);
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${id.slice(id.lastIndexOf("/") + 1)}`,
    // The issuer's name as encoded in the CA, byte for byte, which chain building compares.
    issuer: new x509.X509Certificate(ca.cert.raw).subjectName,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: id },
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(
        new Uint8Array(ca.cert.publicKey.export({ type: "spki", format: "der" })),
      ),
    ],
  });
  await writePair(files.certFile, cert.toString("pem"), files.keyFile, await pemPrivateKey(keys.privateKey));
  return { notAfter, status: existing ? "renewed" : "created" };
}

function isCurrent(cert: X509Certificate, key: KeyObject, id: string, ca: DevCa, now: Date): boolean {
  const ids = spiffeIdsOf(cert.subjectAltName);
  return (
    ids.length === 1 && ids[0] === id && cert.checkPrivateKey(key) && issued(ca.cert, cert) && !expiring(cert, now)
  );
}

function expiring(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validTo).getTime() - now.getTime() < RENEW_WITHIN_DAYS * DAY_MS;
}

/** A certificate and its key as found, or undefined when either is missing or unreadable; modes are set right on the way. */
async function readPair(
  certFile: string,
  keyFile: string,
): Promise<{ cert: X509Certificate; key: KeyObject } | undefined> {
  try {
    const [cert, key] = await Promise.all([readFile(certFile, "utf8"), readFile(keyFile, "utf8")]);
    await Promise.all([chmod(certFile, 0o600), chmod(keyFile, 0o600)]);
    return { cert: new X509Certificate(cert), key: createPrivateKey(key) };
  } catch {
    return undefined;
  }
}

/** The key first: a watcher that reads between the two renames sees a mismatched pair and keeps what it has. */
async function writePair(certFile: string, cert: string, keyFile: string, key: string): Promise<void> {
  await writeAtomically(keyFile, key);
  await writeAtomically(certFile, cert);
}

async function writeAtomically(path: string, data: string): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(temporary, data, { mode: 0o600 });
  await rename(temporary, path);
}

function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"]);
}

async function pemPrivateKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey("pkcs8", key));
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" })
    .export({ format: "pem", type: "pkcs8" })
    .toString();
}

function signingKey(key: KeyObject): Promise<CryptoKey> {
  return crypto.subtle.importKey("pkcs8", key.export({ format: "der", type: "pkcs8" }), KEY_ALGORITHM, false, ["sign"]);
}

/**
 * Runs `fn` holding an exclusive lock file. A lock older than a generous bound is taken to be
 * left by a process that died holding it and is removed.
 */
async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      await (await open(path, "wx", 0o600)).close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const held = await stat(path).catch(() => undefined);
    if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() - started > LOCK_WAIT_MS)
      throw new Error(`${path} is held by another process; remove it if none is running`);
    await sleep(50);
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}
