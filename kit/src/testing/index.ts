export * from "./redis.js";
export * from "./logger.js";
