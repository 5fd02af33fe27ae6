import { ReplyError } from "ioredis";

/**
 * The gateway's Redis could not be reached: deliveries cannot be made durable here (RPC:
 * UNAVAILABLE; webhook: 503 with Retry-After, so the sender keeps the delivery).
 */
export class GatewayStoreUnavailableError extends Error {
  override name = "GatewayStoreUnavailableError";
  constructor(cause: unknown) {
    super("gateway store unavailable", { cause: scrubbed(cause) });
  }
}

/**
 * Runs a Redis call, turning connection failures into GatewayStoreUnavailableError. A reply
 * error is Redis refusing a command, a bug rather than an outage, so it stays an error
 * (INTERNAL on the wire), but without the command arguments ioredis attaches to it: those
 * hold what was being written (a custom route's secret, a webhook body), and error logging
 * prints an error's properties.
 */
export async function storeCall<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (err) {
    if (err instanceof ReplyError) throw scrubbed(err);
    throw new GatewayStoreUnavailableError(err);
  }
}

/** The error's name, message and code only: never a property that could carry a payload. */
function scrubbed(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  const copy = new Error(err.message);
  copy.name = err.name;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(copy, { code });
  return copy;
}
