import { createHmac } from "node:crypto";

/**
 * How the providers sign their webhooks, written from their documentation independently of
 * the gateway's verifiers, so that a test (or a bench) signs a delivery the way the provider
 * would.
 */

/** GitHub's `X-Hub-Signature-256`: `sha256=` + hex HMAC-SHA256 of the raw body. */
export function signGitHub(body: Buffer | string, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Slack's `X-Slack-Signature`: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`. */
export function signSlack(body: Buffer | string, secret: string, timestamp: number | string): string {
  return `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:`).update(body).digest("hex")}`;
}

/** Jira's `X-Hub-Signature` (WebSub's `method=signature`): `sha256=` + hex HMAC-SHA256 of the raw body. */
export function signJira(body: Buffer | string, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Sentry's `Sentry-Hook-Signature`: the bare hex HMAC-SHA256 of the raw body under the client secret. */
export function signSentry(body: Buffer | string, secret: string): string {
  return createHmac("sha256", secret).update(body).digest("hex");
}
