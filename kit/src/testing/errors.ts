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
