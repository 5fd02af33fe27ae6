import { connectIntegration, Credential, type Integration, type IntegrationDeps } from "@hookmesh/kit";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { TOKEN_VARIABLE, type SlackConfig } from "./config.js";
import { SlackMessages } from "./messages.js";
import { build } from "./server.js";
import { slackPolicy } from "./upstream.js";

/** The Slack service, built and not listening, and the parts tests look at. */
export interface SlackIntegration extends Integration {
  slack: SlackMessages;
  token: Credential;
}

export async function composeSlack(config: SlackConfig, deps: IntegrationDeps): Promise<SlackIntegration> {
  const token = new Credential(TOKEN_VARIABLE, deps.env, deps.logger);
  const base = await connectIntegration(config, deps, { service: SlackService.typeName, policy: slackPolicy, baseUrl: config.apiUrl, credentials: [token] });
  const slack = new SlackMessages({ upstream: base.upstream, token, calls: base.calls });
  const server = build({ slack, health: base.health, logger: deps.logger, tls: config.tls });
  return { server, slack, token, calls: base.calls, redis: base.redis, close: () => base.close(server) };
}
