import { Code } from "@connectrpc/connect";
import { type ProviderPolicy, type RateLimitPolicy, retryAfterMs } from "@hookmesh/kit";

/** The wait when Sentry answers 429 without saying how long (its concurrent-request limit). */
const DEFAULT_RATE_LIMIT_WAIT_MS = 1_000;

/**
 * Sentry answers 429 when a caller exceeds an endpoint's requests per window or its concurrent
 * requests. The wait is Retry-After when given; otherwise, when the window is used up
 * (`X-Sentry-Rate-Limit-Remaining: 0`), until `X-Sentry-Rate-Limit-Reset` (epoch seconds);
 * otherwise (too many requests at once) a short pause.
 */
export const sentryRateLimit: RateLimitPolicy = (status, headers) => {
  if (status !== 429) return undefined;
  const retryAfter = retryAfterMs(headers);
  if (retryAfter !== undefined) return retryAfter;
  const reset = Number(headers.get("x-sentry-rate-limit-reset") ?? NaN);
  if (headers.get("x-sentry-rate-limit-remaining") === "0" && Number.isFinite(reset) && reset > 0) {
    return Math.max(0, reset * 1000 - Date.now());
  }
  return DEFAULT_RATE_LIMIT_WAIT_MS;
};

/**
 * Sentry's answers that HTTP semantics alone map wrongly. Sentry refuses the same note by the
 * same user on the same issue within an hour with a 400 "You have already posted that comment.".
 */
export function sentryErrorCode(status: number, body: unknown): Code | undefined {
  const detail = typeof body === "object" && body !== null ? (body as { detail?: unknown }).detail : undefined;
  if (status === 400 && typeof detail === "string" && /already posted/i.test(detail)) return Code.AlreadyExists;
  return undefined;
}

/** How Sentry's API speaks, for the UpstreamClient: its rate-limit headers and error codes. */
export const sentryPolicy: ProviderPolicy = {
  name: "sentry",
  title: "Sentry",
  rateLimit: sentryRateLimit,
  errorCode: sentryErrorCode,
  rateLimitRemainingHeader: "x-sentry-rate-limit-remaining",
};
