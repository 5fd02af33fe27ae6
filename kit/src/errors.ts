/**
 * Errors that any service raises the same way, whatever its domain. Their wire codes are given
 * once, by kit's `mapUpstreamError`.
 */

/**
 * A request the service refuses before acting on it: a field is missing or malformed. The
 * message says what is wrong; `field`, when there is one, names the request field at fault.
 */
export class InvalidRequestError extends Error {
  override name = "InvalidRequestError";
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/**
 * The idempotency store (Redis) failed before the call was made, so it was not made: without
 * the store, a retried call could act twice. Nothing was sent; the caller may retry later.
 */
export class IdempotencyUnavailableError extends Error {
  override name = "IdempotencyUnavailableError";
  constructor(cause: unknown) {
    super("idempotency store unavailable; retry later", { cause });
  }
}
