import { type Credential, MissingCredentialError } from "@hookmesh/kit";
import type { JiraConfig } from "./config.js";

/** The variables that configure credentials, named when there are none. */
const CREDENTIAL_VARIABLES = "JIRA_EMAIL + JIRA_API_TOKEN or JIRA_BEARER_TOKEN";

/**
 * How calls sign in to Jira: email + API token (Basic, Jira Cloud) or a bearer token (Data
 * Center / Server personal access token), the token read at each call so that a rotated one
 * applies at once.
 */
export class JiraAuth {
  constructor(
    private readonly settings: Pick<JiraConfig, "baseUrl" | "auth" | "email">,
    /** The credential of `settings.auth`; undefined when none is configured. */
    readonly token: Credential | undefined,
  ) {}

  /** What keeps calls from reaching Jira: JIRA_BASE_URL, then a credential. */
  missing(): MissingCredentialError | undefined {
    if (this.settings.baseUrl === undefined) return new MissingCredentialError("JIRA_BASE_URL");
    return this.token === undefined ? new MissingCredentialError(CREDENTIAL_VARIABLES) : this.token.missing();
  }

  /** The Authorization header's value. */
  header(): string {
    if (this.token === undefined) throw new MissingCredentialError(CREDENTIAL_VARIABLES);
    const token = this.token.require();
    return this.settings.auth === "basic"
      ? `Basic ${Buffer.from(`${this.settings.email ?? ""}:${token}`).toString("base64")}`
      : `Bearer ${token}`;
  }
}
