import { Code } from "@connectrpc/connect";
import { type ProviderPolicy, type RateLimitPolicy, retryAfterMs, UpstreamError } from "@hookmesh/kit";

/**
 * Slack's Web API answers most errors with HTTP 200 and `{"ok": false, "error": "<name>"}`; the
 * names below are the ones whose meaning is clear enough for a precise code. Any other name is
 * Unknown, with the name in the message.
 */
const ERROR_CODES: Readonly<Record<string, Code>> = {
  channel_not_found: Code.NotFound,
  message_not_found: Code.NotFound,
  thread_not_found: Code.NotFound,

  not_authed: Code.Unauthenticated,
  invalid_auth: Code.Unauthenticated,
  token_revoked: Code.Unauthenticated,
  token_expired: Code.Unauthenticated,
  account_inactive: Code.Unauthenticated,

  missing_scope: Code.PermissionDenied,
  not_in_channel: Code.PermissionDenied,
  cant_update_message: Code.PermissionDenied,
  restricted_action: Code.PermissionDenied,
  restricted_action_read_only_channel: Code.PermissionDenied,
  restricted_action_thread_only_channel: Code.PermissionDenied,
  restricted_action_non_threadable_channel: Code.PermissionDenied,
  not_allowed_token_type: Code.PermissionDenied,
  no_permission: Code.PermissionDenied,
  access_denied: Code.PermissionDenied,
  ekm_access_denied: Code.PermissionDenied,
  team_access_not_granted: Code.PermissionDenied,

  ratelimited: Code.ResourceExhausted,

  invalid_arguments: Code.InvalidArgument,
  msg_too_long: Code.InvalidArgument,
  no_text: Code.InvalidArgument,
  invalid_blocks: Code.InvalidArgument,
  invalid_blocks_format: Code.InvalidArgument,
  invalid_name: Code.InvalidArgument,
  bad_timestamp: Code.InvalidArgument,
  no_item_specified: Code.InvalidArgument,
  invalid_arg_name: Code.InvalidArgument,
  invalid_array_arg: Code.InvalidArgument,
  invalid_charset: Code.InvalidArgument,
  invalid_form_data: Code.InvalidArgument,
  invalid_json: Code.InvalidArgument,
  json_not_object: Code.InvalidArgument,

  is_archived: Code.FailedPrecondition,
  edit_window_closed: Code.FailedPrecondition,
  too_many_reactions: Code.FailedPrecondition,

  internal_error: Code.Internal,
  fatal_error: Code.Internal,
  service_unavailable: Code.Unavailable,
  request_timeout: Code.Unavailable,
};

/** The code for one of Slack's error names; Unknown for a name it does not document precisely. */
export function slackErrorCode(error: string): Code {
  return knownCode(error) ?? Code.Unknown;
}

function knownCode(error: string): Code | undefined {
  return Object.hasOwn(ERROR_CODES, error) ? ERROR_CODES[error] : undefined;
}

type Json = Record<string, unknown>;

const record = (value: unknown): Json =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {};

/** Slack's error name in an answer's body, if it is an `ok: false` answer. */
export function slackErrorName(body: unknown): string | undefined {
  const json = record(body);
  return json.ok === false && typeof json.error === "string" ? json.error : undefined;
}

/**
 * The failure for an `ok: false` answer: the code for its error name, and a message naming the
 * method and the error, plus what Slack adds to explain it (the scope a `missing_scope` needs,
 * the messages of an `invalid_arguments`). Slack never echoes the token in these.
 */
export function slackError(method: string, status: number, body: unknown): UpstreamError {
  const json = record(body);
  const error = slackErrorName(body) ?? "unknown_error";
  const details: string[] = [];
  if (typeof json.needed === "string") details.push(`needed: ${json.needed}`);
  const messages = record(json.response_metadata).messages;
  if (Array.isArray(messages)) details.push(...messages.filter((m): m is string => typeof m === "string").slice(0, 3));
  const suffix = details.length > 0 ? ` (${details.join("; ")})` : "";
  return new UpstreamError(slackErrorCode(error), `slack ${method}: ${error}${suffix}`, status);
}

/** The wait when Slack says to slow down without saying how long. */
const DEFAULT_RATE_LIMIT_WAIT_MS = 1_000;

/**
 * Slack limits each Web API method per workspace: over the limit, it answers HTTP 429 with
 * `Retry-After` in seconds (and `{"ok": false, "error": "ratelimited"}`), without acting on the
 * request; so a `ratelimited` answer is one too, whatever its status.
 */
export const slackRateLimit: RateLimitPolicy = (status, headers, body) => {
  if (status !== 429 && slackErrorName(body) !== "ratelimited") return undefined;
  return retryAfterMs(headers) ?? DEFAULT_RATE_LIMIT_WAIT_MS;
};

/** An error answer (4xx) that carries one of Slack's error names gets that name's code. */
function errorCodeOf(_status: number, body: unknown): Code | undefined {
  const error = slackErrorName(body);
  return error === undefined ? undefined : knownCode(error);
}

/** How Slack's Web API speaks, for the UpstreamClient: its rate-limit answers and error names. */
export const slackPolicy: ProviderPolicy = {
  name: "slack",
  title: "Slack",
  rateLimit: slackRateLimit,
  errorCode: errorCodeOf,
};
