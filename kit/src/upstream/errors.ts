import { Code, ConnectError } from "@connectrpc/connect";
import { IdempotencyUnavailableError, InvalidRequestError } from "../errors.js";
import type { ErrorMapper } from "../interceptors.js";
import { UpstreamError } from "./client.js";
import { MissingCredentialError } from "./credential.js";

/**
 * The wire errors of an integration service: the provider's answers (UpstreamError, whose code
 * the upstream client chose), a missing credential, a refused request, and an idempotency
 * store that failed before the call (Unavailable: nothing was sent, retrying is safe; the cause
 * stays on the error for the log line). Plug into createMeshServer, or call from a service's
 * own mapper after its provider-specific errors.
 */
export const mapUpstreamError: ErrorMapper = (err) => {
  if (err instanceof UpstreamError) return new ConnectError(err.message, err.code);
  if (err instanceof MissingCredentialError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof InvalidRequestError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof IdempotencyUnavailableError)
    return new ConnectError(err.message, Code.Unavailable, undefined, undefined, err.cause);
  return undefined;
};
