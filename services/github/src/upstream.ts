import { Code } from "@connectrpc/connect";
import { type ProviderPolicy, type RateLimitPolicy, retryAfterMs } from "@hookmesh/kit";

/** Sent with every request: GitHub's media type and the REST API version this service speaks. */
export const GITHUB_HEADERS: Readonly<Record<string, string>> = {
  accept: "application/vnd.github+json",
  "x-github-api-version": "2022-11-28",
};

/** GitHub's advice for a secondary rate limit that names no wait: at least a minute. */
export const SECONDARY_RATE_LIMIT_WAIT_MS = 60_000;

/**
 * GitHub's "slow down" answers (403 or 429), and how long each asks to wait:
 * - `Retry-After`, when present;
 * - otherwise, when the primary limit is used up (`X-RateLimit-Remaining: 0`), until
 *   `X-RateLimit-Reset` (epoch seconds);
 * - otherwise (a secondary limit, whose message says so, or a bare 429) a minute.
 * A 403 that is none of these is a refusal (permissions), not a rate limit.
 */
export const githubRateLimit: RateLimitPolicy = (status, headers, body) => {
  if (status !== 403 && status !== 429) return undefined;
  const exhausted = headers.get("x-ratelimit-remaining") === "0";
  const secondary = /secondary rate limit|abuse detection/i.test(errorMessage(body));
  if (status === 403 && !exhausted && !secondary) return undefined;
  const retryAfter = retryAfterMs(headers);
  if (retryAfter !== undefined) return retryAfter;
  const reset = Number(headers.get("x-ratelimit-reset") ?? NaN);
  if (exhausted && Number.isFinite(reset) && reset > 0) return Math.max(0, reset * 1000 - Date.now());
  return SECONDARY_RATE_LIMIT_WAIT_MS;
};

/**
 * GitHub's answers that HTTP semantics alone map wrongly: commenting on a locked issue is a
 * 403 that no permission fixes.
 */
export function githubErrorCode(status: number, body: unknown): Code | undefined {
  if (status === 403 && /\bis locked\b/i.test(errorMessage(body))) return Code.FailedPrecondition;
  return undefined;
}

/**
 * GitHub's error message and, for a 422 "Validation Failed", what failed: the reason is in
 * `errors[].message` ("A pull request already exists for acme:hookmesh/t1."), not in `message`.
 */
export function githubErrorText(body: unknown): string {
  if (typeof body === "string") return body === "" ? "" : `: ${body}`;
  const message = errorMessage(body);
  const errors = typeof body === "object" && body !== null ? (body as { errors?: unknown }).errors : undefined;
  const details = (Array.isArray(errors) ? errors : [])
    .map((e) => (typeof e === "string" ? e : typeof e?.message === "string" ? e.message : ""))
    .filter((text) => text !== "");
  const text = [message, ...details].filter((part) => part !== "").join("; ");
  return text === "" ? "" : `: ${text.slice(0, 500)}`;
}

/** How GitHub's REST API speaks, for the UpstreamClient: its rate-limit answers, error codes and messages. */
export const githubPolicy: ProviderPolicy = {
  name: "github",
  title: "GitHub",
  rateLimit: githubRateLimit,
  errorCode: githubErrorCode,
  errorText: githubErrorText,
};

/**
 * The web origin that serves git for an API URL: github.com for api.github.com,
 * `{sub}.ghe.com` for GitHub Enterprise Cloud with data residency (`api.{sub}.ghe.com`), and
 * the API's own host for GitHub Enterprise Server (`https://ghe.example.com/api/v3`).
 */
export function webOrigin(apiUrl: string): { protocol: string; host: string } {
  const url = new URL(apiUrl);
  let host = url.host;
  if (url.hostname === "api.github.com") host = "github.com";
  else if (/^api\.[^.]+\.ghe\.com$/i.test(url.hostname)) host = host.slice("api.".length);
  return { protocol: url.protocol, host };
}

function errorMessage(body: unknown): string {
  const message = typeof body === "object" && body !== null ? (body as { message?: unknown }).message : undefined;
  return typeof message === "string" ? message : "";
}
