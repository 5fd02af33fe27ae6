/** The gateway as other packages may use it: its configuration and its composition (main.ts runs them; the testing entry starts them in tests). */
export { type ComposedGateway, composeGateway, type GatewayDeps } from "./compose.js";
export { type GatewayConfig, loadConfig } from "./config.js";
