import { createPrivateKey, type KeyObject, sign } from "node:crypto";

/** GitHub refuses a JWT that lives longer than 10 minutes; 9 leaves room for clock drift. */
const JWT_LIFETIME_S = 9 * 60;
/** Issued a minute in the past, as GitHub advises, so a clock slightly ahead of GitHub's is fine. */
const JWT_BACKDATE_S = 60;

/**
 * The private key from GITHUB_APP_PRIVATE_KEY, as GitHub hands it out (PKCS#1
 * `BEGIN RSA PRIVATE KEY`) or as PKCS#8. An environment variable often carries the PEM with
 * its newlines written as `\n`; those are turned back into newlines. Throws a message that
 * holds no part of the key.
 */
export function parseAppPrivateKey(pem: string): KeyObject {
  const text = pem.includes("\n") ? pem : pem.replace(/\\n/g, "\n");
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: "pem" });
  } catch {
    throw new Error("is not a PEM-encoded private key");
  }
  if (key.asymmetricKeyType !== "rsa")
    throw new Error(`is a ${key.asymmetricKeyType ?? "non-RSA"} key; GitHub Apps sign with RSA`);
  return key;
}

/**
 * The JWT that authenticates as the GitHub App itself (RS256): issued at now − 60 s, expiring
 * at now + 9 min, issued by the App's id (or client id).
 */
export function signAppJwt(appId: string, key: KeyObject, nowMs = Date.now()): string {
  const now = Math.floor(nowMs / 1000);
  const header = base64url(JSON.stringify({ alg: "RS256", typ: "JWT" }));
  const payload = base64url(JSON.stringify({ iat: now - JWT_BACKDATE_S, exp: now + JWT_LIFETIME_S, iss: appId }));
  const signature = sign("RSA-SHA256", Buffer.from(`${header}.${payload}`), key).toString("base64url");
  return `${header}.${payload}.${signature}`;
}

function base64url(text: string): string {
  return Buffer.from(text).toString("base64url");
}
