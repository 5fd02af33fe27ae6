import { createHmac, timingSafeEqual } from "node:crypto";

const PREFIX = "sha256=";
const SHA256_HEX = /^[0-9a-f]{64}$/i;

/**
 * Checks GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of the raw body) against
 * each configured secret, so a secret can be rotated by configuring the new one beside the old.
 * Compares in constant time; never reveals which part differed.
 */
export function verifyGitHubSignature(body: Buffer, header: string | undefined, secrets: readonly string[]): boolean {
  if (!header?.startsWith(PREFIX)) return false;
  const hex = header.slice(PREFIX.length);
  // Exactly 64 hex digits: Buffer.from(…, "hex") silently stops at the first non-hex
  // character and drops an odd last digit, so a decoded length check alone would accept
  // a valid digest followed by anything.
  if (!SHA256_HEX.test(hex)) return false;
  const given = Buffer.from(hex, "hex");
  let valid = false;
  for (const secret of secrets) {
    const expected = createHmac("sha256", secret).update(body).digest();
    valid = timingSafeEqual(given, expected) || valid;
  }
  return valid;
}

/** The header value GitHub would send for `body`; for tests and tools that sign deliveries. */
export function signGitHubPayload(body: Buffer | string, secret: string): string {
  return PREFIX + createHmac("sha256", secret).update(body).digest("hex");
}
