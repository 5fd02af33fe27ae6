import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createLogger } from "@hookmesh/kit";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { agentsCommand } from "./agents.js";
import { type CommandSpec, parseCommand, UsageError } from "./command.js";
import { dashboardCommand } from "./dashboard.js";
import { deliveriesCommand } from "./deliveries.js";
import { certsCommand, tokenCommand } from "./identity-commands.js";
import { identityFlags, type OperatorConnection, operatorConnection } from "./operator.js";
import { redisAclCommand } from "./redis-acl.js";
import { parseReplicas, planReplicas } from "./replicas.js";
import { routesCommand } from "./routes.js";
import { sendCommand } from "./send.js";
import { SERVICES, selectServices, service } from "./services.js";
import { startServices } from "./start.js";
import { checkStatus, formatStatus } from "./status.js";
import { tasksCommand } from "./tasks.js";

const USAGE = `usage: hookmesh <command>

commands:
  start [service ...] [--replicas name=N,...]
                        run the named services (default: all) in the foreground, N
                        processes of each service named in --replicas (e.g. tasks=2,agent=3)
  status [--replicas name=N,...]
                        print the health of every service (and replica)
  send PROVIDER [--mention TEXT] [--follow]
                        post a signed delivery mentioning hookmesh to the gateway's HTTP
                        endpoint /webhooks/PROVIDER (github, slack, jira, sentry); --follow
                        streams the task's timeline, exit 0 only if the task SUCCEEDED
  tasks list [--state S] [--provider P] [--page-size N] [--page-token T] [--all]
  tasks get ID          print a task as JSON
  tasks tail ID [AFTER] stream a task's timeline, with event ids, until it ends
  tasks cancel ID [WHY] cancel a queued task, or stop a running one
  tasks retry ID        queue a failed, dead or canceled task again
  routes list | get ID | upsert -f FILE | delete ID
                        the tasks service's routing rules, which decide what becomes a task
  deliveries list [--status S] [--provider P] [--page-size N] [--page-token T] [--all]
  deliveries show ID    print a delivery (headers redacted, body base64) as JSON
  deliveries redeliver ID
  agents list | drain   the agent worker at AGENT_URL: its runs; stop it leasing tasks
  dashboard [--name NAME]
                        print a one-time URL that signs a browser in to the dashboard
  certs [--renew]       make (or renew) the development CA and identities under HOOKMESH_HOME
  token create NAME [--file FILE]
                        a bearer token for NAME (e.g. operator), its hash stored in FILE
                        (default HOOKMESH_OPERATOR_TOKENS_FILE)
  redis-acl [--format commands|aclfile]
                        print Redis ACL users confining each service to its keys

Every command takes --help (hookmesh tasks --help, hookmesh tasks list --help); an unknown
flag exits 2. Commands that print data take --json: the response as protobuf JSON. List
commands print a page (--page-size N) and how to get the next one (--page-token T), or every
page with --all.

Commands that call the mesh do so as the operator: HOOKMESH_TOKEN if set, else the
certificate in --cert/--key/--ca (OPERATOR_TLS_CERT_FILE/_KEY_FILE/_CA_FILE), else the
development one under HOOKMESH_HOME (.hookmesh); cleartext only with HOOKMESH_INSECURE=1.

services: ${SERVICES.map((s) => s.name).join(", ")}
Each service is found at its default port or at <NAME>_URL (e.g. TASKS_URL);
the gateway's HTTP endpoints at GATEWAY_HTTP_URL (default http://127.0.0.1:8080).`;

const REPLICAS_FLAG =
  "name=N,…: N processes of a service (1-10), replica i on its gRPC and admin ports + 100·i, edge/web port + i";

const START = {
  usage: "start [service ...] [--replicas name=N,...]",
  summary:
    "Runs the named services (default: all) in the foreground, as `npm start` does; every peer of a replicated service is given the list of its replicas (e.g. TASKS_URL=https://127.0.0.1:50051,https://127.0.0.1:50151).",
  options: { replicas: { type: "string" } },
  flags: { replicas: REPLICAS_FLAG },
  example: "hookmesh start --replicas tasks=2,agent=3,gateway=2",
} satisfies CommandSpec;

const STATUS = {
  usage: "status [--json] [--replicas name=N,...]",
  summary:
    "The health of every service (grpc.health.v1), of each replica when given the --replicas of `hookmesh start`; exit 1 if any is not SERVING.",
  options: { json: { type: "boolean" }, replicas: { type: "string" } },
  flags: { json: 'print {"services": [{"name", "url", "status", "healthy"}]} as JSON', replicas: REPLICAS_FLAG },
  example: "hookmesh status --replicas tasks=2,agent=3,gateway=2",
} satisfies CommandSpec;

/** A transport that opens the operator's connection at its first call, so that `--help` and usage errors need no identity. */
function lazyTransport(open: () => Transport): Transport {
  return {
    unary: (...args) => open().unary(...args),
    stream: (...args) => open().stream(...args),
  };
}

/** Aborts on Ctrl-C, so that a command streaming a timeline ends its stream instead of dying mid-line. */
function untilInterrupted(): AbortSignal {
  const interrupted = new AbortController();
  process.once("SIGINT", () => interrupted.abort());
  return interrupted.signal;
}

const {
  args: [command, ...args],
  env,
} = identityFlags(process.argv.slice(2), process.env);
const logger = createLogger({ service: "hookmesh", level: process.env.LOG_LEVEL });
const print = (line: string) => console.log(line);
// `hookmesh tasks list | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});
const note = (line: string) => console.error(line);

/** The operator's connection, opened by the first command that calls the mesh. */
let operator: OperatorConnection | undefined;
const connect = () => (operator ??= operatorConnection(env));

try {
  switch (command) {
    case "start": {
      const parsed = parseCommand(START, args, print);
      if (!parsed) break;
      const counts = parseReplicas(parsed.values.replicas);
      process.exitCode = await startServices(planReplicas(selectServices(parsed.positionals), counts, env), logger);
      break;
    }
    case "status": {
      const parsed = parseCommand(STATUS, args, print);
      if (!parsed) break;
      const replicas = planReplicas(SERVICES, parseReplicas(parsed.values.replicas), env);
      const rows = await checkStatus(replicas, env, (s, url) => connect().transport(s, url));
      print(parsed.values.json ? JSON.stringify({ services: rows }, null, 2) : formatStatus(rows));
      process.exitCode = rows.every((r) => r.healthy) ? 0 : 1;
      break;
    }
    case "send": {
      const tasks = createClient(
        TaskService,
        lazyTransport(() => connect().transport(service("tasks"))),
      );
      process.exitCode = await sendCommand(args, { env, print, tasks, signal: untilInterrupted() });
      break;
    }
    case "tasks":
      await tasksCommand(
        args,
        lazyTransport(() => connect().transport(service("tasks"))),
        {
          print,
          note,
          signal: untilInterrupted(),
        },
      );
      break;
    case "deliveries":
      await deliveriesCommand(
        args,
        lazyTransport(() => connect().transport(service("gateway"))),
        print,
      );
      break;
    case "routes":
      await routesCommand(
        args,
        lazyTransport(() => connect().transport(service("tasks"))),
        print,
      );
      break;
    case "agents":
      await agentsCommand(
        args,
        lazyTransport(() => connect().transport(service("agent"))),
        print,
      );
      break;
    case "dashboard":
      await dashboardCommand(
        args,
        lazyTransport(() => connect().transport(service("dashboard"))),
        print,
      );
      break;
    case "certs":
      await certsCommand(args, env, print);
      break;
    case "token":
      tokenCommand(args, env, print, note);
      break;
    case "redis-acl":
      redisAclCommand(args, SERVICES, env, print, note);
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
  const message =
    err instanceof ConnectError
      ? `${Code[err.code]}: ${err.rawMessage}`
      : err instanceof Error
        ? err.message
        : String(err);
  console.error(`hookmesh ${command}: ${message}`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
} finally {
  operator?.close();
}
