import { Code, ConnectError } from "@connectrpc/connect";
import { ReplyError } from "ioredis";
import type { ErrorMapper } from "./interceptors.js";

/**
 * A service's Redis store could not be reached; the operation may be retried (UNAVAILABLE on
 * the wire). `store` names it in the message ("task store", "gateway store").
 */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
  constructor(
    readonly store: string,
    cause: unknown,
  ) {
    super(`${store} unavailable`, { cause: scrubbed(cause) });
  }
}

/**
 * Replies with which Redis says it cannot serve the command for now, mostly in a failover:
 * the cluster lost a slot's master, a demoted master refuses writes, a replica still loads.
 */
const FAILOVER_REPLY = /^(CLUSTERDOWN|READONLY|TRYAGAIN|LOADING|MASTERDOWN) /;

/**
 * The runner of one store's Redis calls: `const storeCall = storeCaller("task store")`. A
 * connection failure (or a failover's refusal) becomes StoreUnavailableError. A reply error
 * is Redis refusing a command, a bug rather than an outage, so it stays an error (INTERNAL on
 * the wire), but without the command arguments ioredis attaches to it: those hold what was
 * being written (a webhook's raw body, a custom webhook's secret), and error logging prints an
 * error's properties.
 */
export function storeCaller(store: string): <T>(operation: () => Promise<T>) => Promise<T> {
  return async (operation) => {
    try {
      return await operation();
    } catch (err) {
      if (err instanceof ReplyError && !FAILOVER_REPLY.test((err as Error).message)) throw scrubbed(err);
      throw new StoreUnavailableError(store, err);
    }
  };
}

/** UNAVAILABLE for a store outage, keeping the cause for the log line only. */
export const mapStoreError: ErrorMapper = (err) =>
  err instanceof StoreUnavailableError
    ? new ConnectError(err.message, Code.Unavailable, undefined, undefined, err.cause)
    : undefined;

/** The error's name, message and code only: never a property that could carry a payload. */
function scrubbed(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  const copy = new Error(err.message);
  copy.name = err.name;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(copy, { code });
  return copy;
}
