import { createLogger } from "@hookmesh/kit";
import { selectServices, SERVICES } from "./services.js";
import { startServices } from "./start.js";
import { checkStatus, formatStatus } from "./status.js";

const USAGE = `usage: hookmesh <command>

commands:
  start [service ...]   run the named services (default: all) in the foreground
  status                print the health of every service

services: ${SERVICES.map((s) => s.name).join(", ")}
Each service is found at its default port or at <NAME>_URL (e.g. TASKS_URL).`;

const [command, ...args] = process.argv.slice(2);
const logger = createLogger({ service: "hookmesh", level: process.env.LOG_LEVEL });

try {
  switch (command) {
    case "start":
      process.exitCode = await startServices(selectServices(args), logger);
      break;
    case "status": {
      const rows = await checkStatus(SERVICES, process.env);
      console.log(formatStatus(rows));
      process.exitCode = rows.every((r) => r.healthy) ? 0 : 1;
      break;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      break;
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      process.exitCode = 2;
  }
} catch (err) {
  console.error(`hookmesh ${command}: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
