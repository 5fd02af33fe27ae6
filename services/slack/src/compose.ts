import { Credential, connectIntegration, type Integration, type IntegrationDeps } from "@hookmesh/kit";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { type SlackConfig, TOKEN_VARIABLE } from "./config.js";
import { routes } from "./routes.js";
import { SlackApi } from "./slack-api.js";
import { slackPolicy } from "./upstream.js";

/** The Slack service, built and not listening, and the parts tests look at. */
export interface SlackIntegration extends Integration {
  api: SlackApi;
  token: Credential;
}

export async function composeSlack(config: SlackConfig, deps: IntegrationDeps): Promise<SlackIntegration> {
  const token = new Credential(TOKEN_VARIABLE, deps.env, deps.logger);
  const base = await connectIntegration(config, deps, {
    service: SlackService.typeName,
    policy: slackPolicy,
    baseUrl: config.apiUrl,
    credentials: [token],
  });
  const api = new SlackApi({ upstream: base.upstream, token, calls: base.calls });
  return { ...base.serve(routes(api)), api, token };
}
