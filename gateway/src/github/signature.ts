import { createHmac, timingSafeEqual } from "node:crypto";

const PREFIX = "sha256=";

/**
 * Checks GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of the raw body) against
 * each configured secret, so a secret can be rotated by configuring the new one beside the old.
 * Compares in constant time; never reveals which part differed.
 */
export function verifyGitHubSignature(body: Buffer, header: string | undefined, secrets: readonly string[]): boolean {
  if (!header?.startsWith(PREFIX)) return false;
  const given = Buffer.from(header.slice(PREFIX.length), "hex");
  // A non-hex or short header decodes to a buffer of the wrong length: never equal, and
  // timingSafeEqual would throw on the length mismatch.
  if (given.length !== 32) return false;
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
