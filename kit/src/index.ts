export * from "./client/index.js";
export * from "./config.js";
export * from "./health.js";
export * from "./interceptors.js";
export * from "./logger.js";
export * from "./process.js";
export * from "./redis.js";
export * from "./serve.js";
