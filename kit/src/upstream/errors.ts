import { Code, ConnectError } from "@connectrpc/connect";
import type { ErrorMapper } from "../interceptors.js";
import { UpstreamError } from "./client.js";
import { MissingCredentialError } from "./credential.js";

/** The wire errors of an integration service's upstream failures; plug into createMeshServer. */
export const mapUpstreamError: ErrorMapper = (err) => {
  if (err instanceof UpstreamError) return new ConnectError(err.message, err.code);
  if (err instanceof MissingCredentialError) return new ConnectError(err.message, Code.FailedPrecondition);
  return undefined;
};
