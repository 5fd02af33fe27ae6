import { Code, ConnectError } from "@connectrpc/connect";
import { createLogger } from "@hookmesh/kit";
import { selectServices, SERVICES } from "./services.js";
import { startServices } from "./start.js";
import { checkStatus, formatStatus } from "./status.js";
import { deliveriesCommand } from "./deliveries.js";
import { redisAclCommand } from "./redis-acl.js";
import { routesCommand, tasksCommand } from "./tasks.js";

const USAGE = `usage: hookmesh <command>

commands:
  start [service ...]   run the named services (default: all) in the foreground
  status                print the health of every service
  tasks list [--state S] [--provider P] [--limit N]
  tasks show ID         print a task as JSON
  tasks tail ID [AFTER] stream a task's timeline until it ends
  tasks cancel ID [WHY] cancel a queued task, or stop a running one
  tasks retry ID        queue a failed, dead or canceled task again
  routes list | get ID | delete ID
  deliveries list [--status S] [--provider P] [--limit N]
  deliveries show ID    print a delivery (headers redacted, body base64) as JSON
  deliveries redeliver ID
  redis-acl [--format commands|aclfile]
                        print Redis ACL users confining each service to its keys

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
    case "tasks": {
      const interrupted = new AbortController();
      process.once("SIGINT", () => interrupted.abort());
      await tasksCommand(args, process.env, (line) => console.log(line), interrupted.signal);
      break;
    }
    case "deliveries":
      await deliveriesCommand(args, process.env, (line) => console.log(line));
      break;
    case "routes":
      await routesCommand(args, process.env, (line) => console.log(line));
      break;
    case "redis-acl":
      redisAclCommand(args, SERVICES, process.env, (line) => console.log(line), (line) => console.error(line));
      break;
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
  const message = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : err instanceof Error ? err.message : String(err);
  console.error(`hookmesh ${command}: ${message}`);
  process.exitCode = 1;
}
