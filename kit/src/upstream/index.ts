export * from "./client.js";
export * from "./credential.js";
export * from "./idempotency.js";
export * from "./errors.js";
