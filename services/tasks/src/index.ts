/** The tasks service as other packages may use it: its configuration and its composition (main.ts runs them; the testing entry starts them in tests). */
export { type ComposedTasks, composeTasks, type TasksDeps } from "./compose.js";
export { loadConfig, type TasksConfig } from "./config.js";
