import { hmacMatches } from "../webhook-provider.js";

const PREFIX = "sha256=";

/**
 * Checks GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of the raw body) against
 * each configured secret, so a secret can be rotated by configuring the new one beside the old.
 */
export function verifyGitHubSignature(body: Buffer, header: string | undefined, secrets: readonly string[]): boolean {
  if (!header?.startsWith(PREFIX)) return false;
  return hmacMatches("sha256", body, header.slice(PREFIX.length), secrets);
}
