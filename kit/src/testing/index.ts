export * from "./errors.js";
export * from "./fake-provider.js";
export * from "./integration.js";
export * from "./logger.js";
export * from "./net.js";
export * from "./redis.js";
