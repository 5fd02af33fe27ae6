import { Code, ConnectError } from "@connectrpc/connect";
import { type ErrorMapper, mapUpstreamError } from "@hookmesh/kit";

/** The issue's workflow offers no such transition from its current status. */
export class TransitionUnavailableError extends Error {
  override name = "TransitionUnavailableError";
  constructor(
    readonly issueKey: string,
    readonly wanted: string,
    readonly available: readonly { id: string; name: string }[],
  ) {
    const names = available.map((t) => `"${t.name}" (${t.id})`).join(", ");
    super(`transition ${wanted} is not available for ${issueKey}; available: ${names || "none"}`);
  }
}

/** Jira's unavailable transitions, then what every integration service maps (kit's mapUpstreamError). */
export const mapJiraError: ErrorMapper = (err) => {
  if (err instanceof TransitionUnavailableError) return new ConnectError(err.message, Code.FailedPrecondition);
  return mapUpstreamError(err);
};
