import { Credential, connectIntegration, type Integration, type IntegrationDeps } from "@hookmesh/kit";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { JiraAuth } from "./auth.js";
import { type JiraConfig, TOKEN_VARIABLES } from "./config.js";
import { mapJiraError } from "./errors.js";
import { DRY_RUN_BASE_URL, JiraApi } from "./jira-api.js";
import { routes } from "./routes.js";
import { jiraPolicy } from "./upstream.js";

/** The Jira service, built and not listening, and the parts tests look at. */
export interface JiraIntegration extends Integration {
  api: JiraApi;
  /** The credential in use; undefined when none is configured. */
  token: Credential | undefined;
}

export async function composeJira(config: JiraConfig, deps: IntegrationDeps): Promise<JiraIntegration> {
  const token =
    config.auth === "none" ? undefined : new Credential(TOKEN_VARIABLES[config.auth], deps.env, deps.logger);
  const auth = new JiraAuth(config, token);
  const base = await connectIntegration(config, deps, {
    service: JiraService.typeName,
    policy: jiraPolicy,
    // Without JIRA_BASE_URL only dry runs are possible; their URLs say so.
    baseUrl: config.baseUrl ?? DRY_RUN_BASE_URL,
    credentials: token === undefined ? [] : [token],
    missing: () => auth.missing(),
  });
  const api = new JiraApi({ upstream: base.upstream, auth, calls: base.calls, apiVersion: config.apiVersion });
  return { ...base.serve(routes(api), mapJiraError), api, token };
}
