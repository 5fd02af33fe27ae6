import { Credential, connectIntegration, type Integration, type IntegrationDeps } from "@hookmesh/kit";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { type SentryConfig, TOKEN_VARIABLE } from "./config.js";
import { routes } from "./routes.js";
import { SentryApi } from "./sentry-api.js";
import { sentryPolicy } from "./upstream.js";

/** The Sentry service, built and not listening, and the parts tests look at. */
export interface SentryIntegration extends Integration {
  api: SentryApi;
  token: Credential;
}

export async function composeSentry(config: SentryConfig, deps: IntegrationDeps): Promise<SentryIntegration> {
  const token = new Credential(TOKEN_VARIABLE, deps.env, deps.logger);
  const base = await connectIntegration(config, deps, {
    service: SentryService.typeName,
    policy: sentryPolicy,
    baseUrl: config.apiUrl,
    credentials: [token],
  });
  const api = new SentryApi({ upstream: base.upstream, token, calls: base.calls });
  return { ...base.serve(routes(api)), api, token };
}
