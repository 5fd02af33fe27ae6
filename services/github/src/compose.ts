import { Credential, connectIntegration, type Integration, type IntegrationDeps } from "@hookmesh/kit";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { GitHubAuth } from "./auth.js";
import { APP_KEY_VARIABLE, type GitHubConfig, TOKEN_VARIABLE } from "./config.js";
import { mapGitHubError } from "./errors.js";
import { GitHubApi } from "./github-api.js";
import { routes } from "./routes.js";
import { githubPolicy } from "./upstream.js";

/** The GitHub service, built and not listening, and the parts tests look at. */
export interface GitHubIntegration extends Integration {
  api: GitHubApi;
  auth: GitHubAuth;
  token: Credential;
  privateKey: Credential;
}

export async function composeGitHub(config: GitHubConfig, deps: IntegrationDeps): Promise<GitHubIntegration> {
  const { logger, env } = deps;
  const token = new Credential(TOKEN_VARIABLE, env, logger);
  const privateKey = new Credential(APP_KEY_VARIABLE, env, logger);
  const base = await connectIntegration(config, deps, {
    service: GitHubService.typeName,
    policy: githubPolicy,
    baseUrl: config.apiUrl,
    credentials: [token, privateKey],
    // Asked at each call, once `auth` below exists.
    missing: () => auth.missing(),
  });
  // Installation tokens are asked of the same API, through the same client.
  const auth = new GitHubAuth({
    upstream: base.upstream,
    token,
    ...(config.appId !== undefined && { app: { id: config.appId, privateKey } }),
    logger,
  });
  const api = new GitHubApi({ upstream: base.upstream, auth, calls: base.calls, logger });
  return { ...base.serve(routes(api), mapGitHubError), api, auth, token, privateKey };
}
