export * from "./config.js";
export * from "./context.js";
export * from "./rpc.js";
export * from "./start.js";
