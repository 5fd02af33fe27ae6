import { Code } from "@connectrpc/connect";
import { type ProviderPolicy, retryAfterMs } from "@hookmesh/kit";

/**
 * How Jira's REST API speaks, for the UpstreamClient: its rate-limit headers, and its error
 * bodies (`{errorMessages: [...], errors: {field: message}}`) in the messages callers see.
 */
export const jiraPolicy: ProviderPolicy = {
  name: "jira",
  title: "Jira",
  rateLimit: jiraRateLimit,
  // Jira says what is wrong with each field in `errors`, beside `errorMessages`.
  errorText: jiraErrorText,
  // Jira refuses oversized comments with 413; everything else follows HTTP semantics.
  errorCode: (status) => (status === 413 ? Code.InvalidArgument : undefined),
};

/**
 * Jira Cloud answers 429 with `Retry-After` (seconds) and `X-RateLimit-Reset` (an ISO 8601
 * time); the wait is the first of them present. Undefined leaves the client's default.
 */
export function jiraRateLimit(status: number, headers: Headers): number | undefined {
  if (status !== 429) return undefined;
  const retryAfter = retryAfterMs(headers);
  if (retryAfter !== undefined) return retryAfter;
  const reset = Date.parse(headers.get("x-ratelimit-reset") ?? "");
  return Number.isNaN(reset) ? undefined : Math.max(0, reset - Date.now());
}

const MAX_ERROR_TEXT = 500;

/** `: message; field: message`, from Jira's error body (or Atlassian's `{message}`), or "". */
export function jiraErrorText(body: unknown): string {
  const parts: string[] = [];
  if (typeof body === "string") {
    parts.push(body.replace(/\s+/g, " ").trim());
  } else if (typeof body === "object" && body !== null) {
    const { errorMessages, errors, message } = body as Record<string, unknown>;
    if (Array.isArray(errorMessages)) parts.push(...errorMessages.filter((m): m is string => typeof m === "string"));
    if (typeof errors === "object" && errors !== null) {
      for (const [field, text] of Object.entries(errors)) if (typeof text === "string") parts.push(`${field}: ${text}`);
    }
    if (parts.length === 0 && typeof message === "string") parts.push(message);
  }
  const text = parts.filter((part) => part !== "").join("; ");
  if (text === "") return "";
  return `: ${text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text}`;
}
