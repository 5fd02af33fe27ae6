export * from "./errors.js";
export * from "./logger.js";
export * from "./net.js";
export * from "./redis.js";
