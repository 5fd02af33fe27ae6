export * from "./clients.js";
export * from "./errors.js";
export * from "./logger.js";
export * from "./net.js";
export * from "./process.js";
export * from "./redis.js";
export * from "./webhook-signing.js";
export * from "./identities.js";
