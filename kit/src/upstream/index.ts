export * from "./client.js";
export * from "./config.js";
export * from "./credential.js";
export * from "./errors.js";
export * from "./idempotency.js";
export * from "./integration.js";
export * from "./provider-calls.js";
