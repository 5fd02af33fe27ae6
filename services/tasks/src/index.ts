/** The tasks service as other packages may use it: its configuration and its composition (main.ts runs them; the testing entry starts them in tests). */
export { composeTasks, type TasksDeps, type ComposedTasks } from "./compose.js";
export { loadConfig, type TasksConfig } from "./config.js";
