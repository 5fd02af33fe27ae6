/** The gateway as other packages may use it: its configuration and its composition (main.ts runs them; the testing entry starts them in tests). */
export { composeGateway, type GatewayDeps, type ComposedGateway } from "./compose.js";
export { loadConfig, type GatewayConfig } from "./config.js";
