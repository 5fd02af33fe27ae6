import { ConnectError } from "@connectrpc/connect";

/** The ConnectError a call fails with; throws if it succeeds or fails with something else. */
export async function callError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw new Error(`expected a ConnectError, got ${String(err)}`, { cause: err });
  }
  throw new Error("expected the call to fail");
}

/** The error a call fails with, of `type` when given; throws if it succeeds or fails otherwise. */
export async function failure<E extends Error = Error>(
  call: Promise<unknown>,
  type?: abstract new (...args: never[]) => E,
): Promise<E> {
  try {
    await call;
  } catch (err) {
    if (err instanceof (type ?? Error)) return err as E;
    throw new Error(`expected ${type?.name ?? "an Error"}, got ${String(err)}`, { cause: err });
  }
  throw new Error("expected the call to fail");
}
