/**
 * Errors that any service raises the same way, whatever its domain. Their wire codes are given
 * once, by kit's `mapUpstreamError`.
 */

/**
 * Something wrong with one named thing (a request field, a configuration variable, a stored
 * record's field): `field` names it, and the message starts with it, so that whoever reads the
 * message knows what to fix. Domain errors of that kind extend it and add only their name.
 */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

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
