import { Code, ConnectError } from "@connectrpc/connect";

/** A request the service refuses before calling Slack (a missing or malformed field). */
export class InvalidRequestError extends Error {
  override name = "InvalidRequestError";
}

/** The idempotency store (Redis) cannot be reached, so a keyed call cannot be made safely. */
export class IdempotencyUnavailableError extends Error {
  override name = "IdempotencyUnavailableError";
  constructor(cause: unknown) {
    super("idempotency store unavailable; retry later", { cause });
  }
}

/** The wire errors of the Slack service's own failures (upstream ones go through the kit's mapper). */
export function mapSlackError(err: unknown): ConnectError | undefined {
  if (err instanceof InvalidRequestError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof IdempotencyUnavailableError) return new ConnectError(err.message, Code.Unavailable, undefined, undefined, err.cause);
  return undefined;
}
