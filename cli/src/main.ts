import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLogger } from "@hookmesh/kit";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { selectServices, SERVICES } from "./services.js";
import { startServices } from "./start.js";
import { checkStatus, formatStatus } from "./status.js";
import { deliveriesCommand } from "./deliveries.js";
import { redisAclCommand } from "./redis-acl.js";
import { sendCommand } from "./send.js";
import { routesCommand, tasksCommand, tasksUrl } from "./tasks.js";

const USAGE = `usage: hookmesh <command>

commands:
  start [service ...]   run the named services (default: all) in the foreground
  status                print the health of every service
  send PROVIDER [--mention TEXT] [--follow]
                        post a signed delivery mentioning hookmesh to the gateway's HTTP
                        endpoint /webhooks/PROVIDER (github, slack, jira, sentry); --follow
                        streams the task's timeline, exit 0 only if the task SUCCEEDED
  tasks list [--state S] [--provider P] [--limit N]
  tasks show ID         print a task as JSON
  tasks tail ID [AFTER] stream a task's timeline until it ends
  tasks cancel ID [WHY] cancel a queued task, or stop a running one
  tasks retry ID        queue a failed, dead or canceled task again
  routes list | get ID | delete ID
                        the tasks service's routing rules, which decide what becomes a task
  deliveries list [--status S] [--provider P] [--limit N]
  deliveries show ID    print a delivery (headers redacted, body base64) as JSON
  deliveries redeliver ID
  redis-acl [--format commands|aclfile]
                        print Redis ACL users confining each service to its keys

services: ${SERVICES.map((s) => s.name).join(", ")}
Each service is found at its default port or at <NAME>_URL (e.g. TASKS_URL);
the gateway's HTTP endpoints at GATEWAY_HTTP_URL (default http://127.0.0.1:8080).`;

/** Aborts on Ctrl-C, so that a command streaming a timeline ends its stream instead of dying mid-line. */
function untilInterrupted(): AbortSignal {
  const interrupted = new AbortController();
  process.once("SIGINT", () => interrupted.abort());
  return interrupted.signal;
}

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
    case "send": {
      const tasks = createClient(TaskService, createGrpcTransport({ baseUrl: tasksUrl(process.env) }));
      const print = (line: string) => console.log(line);
      process.exitCode = await sendCommand(args, { env: process.env, print, tasks, signal: untilInterrupted() });
      break;
    }
    case "tasks":
      await tasksCommand(args, process.env, (line) => console.log(line), untilInterrupted());
      break;
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
