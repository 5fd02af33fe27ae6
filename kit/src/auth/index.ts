export * from "./authorize.js";
export * from "./peer.js";
export * from "./tokens.js";
