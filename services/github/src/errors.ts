import { Code, ConnectError } from "@connectrpc/connect";
import { type ErrorMapper, FieldError, MissingCredentialError, mapUpstreamError } from "@hookmesh/kit";

/**
 * The call cannot be made with the credentials the service has: a GitHub App call without
 * `repository.installation_id`, or a clone token asked of a personal token.
 */
export class AuthPreconditionError extends Error {
  override name = "AuthPreconditionError";
}

/** PublishChanges onto an existing branch that no longer points at the base commit. */
export class BranchMovedError extends Error {
  override name = "BranchMovedError";
  constructor(branch: string, baseSha: string, head: string) {
    const where = head ? `its head is ${head}, not the base ${baseSha}` : `it left the base ${baseSha} meanwhile`;
    super(`branch ${branch} moved (${where}): the changes would not be a fast-forward, so they are not published`);
  }
}

/** PublishChanges onto an existing branch that heads no open pull request: only those are written. */
export class NotPullRequestBranchError extends Error {
  override name = "NotPullRequestBranchError";
}

/** PublishChanges over its limits (files, bytes). */
export class PublishLimitError extends Error {
  override name = "PublishLimitError";
}

/**
 * Neither a personal token nor a GitHub App is configured (and dry run is off). Names
 * GITHUB_TOKEN, the simpler of the two, and says where the App's variables go.
 */
export class NoCredentialsError extends MissingCredentialError {
  constructor(tokenVariable: string, appVariables: string) {
    super(tokenVariable);
    this.message = `${tokenVariable} is not set (nor ${appVariables}); set one, or HOOKMESH_DRY_RUN=1 to answer without calling GitHub`;
  }
}

/** A configured credential cannot be used (say, a private key that is not a PEM RSA key). */
export class InvalidCredentialError extends FieldError {
  override name = "InvalidCredentialError";
}

/** GitHub's own preconditions on credentials, then what every integration service maps (kit's mapUpstreamError). */
export const mapGitHubError: ErrorMapper = (err) => {
  if (err instanceof AuthPreconditionError || err instanceof InvalidCredentialError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof NotPullRequestBranchError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof BranchMovedError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof PublishLimitError) return new ConnectError(err.message, Code.ResourceExhausted);
  return mapUpstreamError(err);
};
