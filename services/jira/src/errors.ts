/** A request field is missing or malformed; `field` names it. Nothing was sent to Jira. */
export class InvalidRequestError extends Error {
  override name = "InvalidRequestError";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

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
