/** A request the service refuses before calling Sentry (a missing or malformed field). */
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
