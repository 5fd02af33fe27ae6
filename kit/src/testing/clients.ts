import { type ConnectRouter, createClient, createRouterTransport } from "@connectrpc/connect";
import type { ClientFactory } from "../client/index.js";

/**
 * A ClientFactory whose every client is served in memory by `routes`, whatever its URL: how a
 * test puts a contract-level fake (a generated service descriptor and a handler) where a
 * service's downstreams would be, through the same `deps.clients` production fills.
 */
export function routerClientFactory(routes: (router: ConnectRouter) => void): ClientFactory {
  const transport = createRouterTransport(routes);
  return {
    client: (service) => createClient(service, transport),
    breakerState: () => "closed",
    breakers: () => [],
    endpoints: () => [],
    close: () => {},
  };
}
