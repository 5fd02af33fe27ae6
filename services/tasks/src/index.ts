/** The tasks service's public entry: what a container runs, and what cross-service tests start. */
export { composeTasks, type TasksDeps, type TasksService } from "./compose.js";
export { loadConfig, type TasksConfig } from "./config.js";
