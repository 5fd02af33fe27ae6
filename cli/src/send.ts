import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { abortAfter, envSecrets, envString, envUrl } from "@hookmesh/kit";
import { type Task, TaskState, TaskView } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { Print } from "./args.js";
import { type CommandSpec, parseCommand, UsageError } from "./command.js";
import {
  isSampleProvider,
  SAMPLE_PROVIDERS,
  type SampleDelivery,
  SECRET_VARIABLES,
  sampleDelivery,
} from "./sample-deliveries.js";
import { formatEvent } from "./tasks.js";

/** The gateway's webhook edge (its HTTP port); `GATEWAY_URL` is its gRPC port, as for every service. */
export const GATEWAY_HTTP_URL_VARIABLE = "GATEWAY_HTTP_URL";
const DEFAULT_GATEWAY_HTTP_URL = "http://127.0.0.1:8080";
const DEFAULT_TEXT = "please say hello";

export const SEND = {
  usage: `send ${SAMPLE_PROVIDERS.join("|")} [--mention TEXT] [--follow]`,
  summary:
    "Posts a signed delivery mentioning hookmesh to the gateway, as the provider would.\n" +
    "It goes to /webhooks/PROVIDER; the delivery id, the HTTP status and the task are printed.",
  options: { mention: { type: "string", default: DEFAULT_TEXT }, follow: { type: "boolean", default: false } },
  flags: {
    mention: `the comment's text after the mention (default "${DEFAULT_TEXT}")`,
    follow: "stream the task's timeline to its end; exit 0 only if it SUCCEEDED",
  },
  example: "hookmesh send github --mention 'what does this repository do?' --follow",
} satisfies CommandSpec;
/** Longer than any provider waits for an answer, so a slow gateway still answers. */
const POST_TIMEOUT_MS = 15_000;
const TASK_LOOKUP_TIMEOUT_MS = 2_000;
/** How long to wait for the task the gateway's answer names to be made, and how often to look. */
const TASK_WAIT_MS = 5_000;
const TASK_POLL_MS = 50;

/** The gateway's JSON answer: the task a delivery becomes (and its log entry), or why it refused. */
interface GatewayAnswer {
  task_id?: string;
  queued?: boolean;
  delivery?: string;
  error?: string;
}

export interface SendDeps {
  env: NodeJS.ProcessEnv;
  print: Print;
  tasks: Client<typeof TaskService>;
  /** Ends a `--follow` early (Ctrl-C). */
  signal: AbortSignal;
}

/**
 * `hookmesh send <provider> [--mention TEXT] [--follow]`: posts a realistic, signed delivery
 * that mentions hookmesh to the gateway, as the provider would, and says what became of it.
 * Throws when the gateway does not answer 2xx; resolves to the exit code otherwise: 0, or
 * with `--follow`, 0 only if the task ends SUCCEEDED.
 */
export async function sendCommand(args: string[], deps: SendDeps): Promise<number> {
  const { env, print, tasks, signal } = deps;
  const parsed = parseCommand(SEND, args, print);
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const provider = positionals[0];
  if (!isSampleProvider(provider) || positionals.length > 1) {
    throw new UsageError(`usage: hookmesh send ${SAMPLE_PROVIDERS.join("|")} [--mention TEXT] [--follow]`);
  }
  const variable = SECRET_VARIABLES[provider];
  const [secret] = envSecrets(env, variable);
  if (secret === undefined) {
    throw new Error(`${variable} (or ${variable}_FILE) is not set: give it the secret the gateway verifies with`);
  }
  const gateway = envUrl(env, GATEWAY_HTTP_URL_VARIABLE, DEFAULT_GATEWAY_HTTP_URL);
  const delivery = sampleDelivery(provider, {
    text: values.mention,
    mention: envString(env, "HOOKMESH_MENTION", "@hookmesh"),
    secret,
    now: new Date(),
  });
  const url = `${gateway}/webhooks/${provider}`;
  const res = await post(url, delivery, signal);
  const answer = (await res.json().catch(() => ({}))) as GatewayAnswer;
  print(`delivery ${delivery.deliveryId}  ${provider} ${delivery.eventType}  POST ${url}  ${res.status}`);
  if (!res.ok) {
    const why = answer.error ?? res.statusText;
    throw new Error(`the gateway answered ${res.status} ${why}${hint(res.status, variable)}`);
  }
  const taskId = answer.task_id ?? "";
  if (taskId === "") {
    print(`queued in the gateway's outbox as ${answer.delivery}: the task is made once the tasks service answers`);
    return 0;
  }
  // The gateway answers once the delivery is durable and names its task; its forwarder makes
  // the task a moment later, or once the tasks service answers.
  const made = await taskOnceMade(taskId, tasks, signal);
  if (made === "not made") {
    print(`task ${taskId}, not made yet: the delivery waits in the gateway's outbox until the tasks service answers`);
    return 0;
  }
  if (values.follow) return follow(taskId, deps);
  // Only to say what became of the delivery: without an answer from tasks, its id is enough.
  print(made ? describeTask(made) : `task ${taskId}`);
  return 0;
}

/**
 * The task once the tasks service has it; "not made" when it has not within TASK_WAIT_MS,
 * undefined when tasks cannot be asked.
 */
async function taskOnceMade(
  id: string,
  tasks: Client<typeof TaskService>,
  signal: AbortSignal,
): Promise<Task | "not made" | undefined> {
  const deadline = Date.now() + TASK_WAIT_MS;
  for (;;) {
    try {
      return (await tasks.getTask({ id, view: TaskView.BASIC }, { timeoutMs: TASK_LOOKUP_TIMEOUT_MS, signal })).task;
    } catch (err) {
      if (ConnectError.from(err).code !== Code.NotFound) return undefined;
      if (Date.now() > deadline || signal.aborted) return "not made";
      await sleep(TASK_POLL_MS, undefined, { signal }).catch(() => {});
    }
  }
}

/** Prints the task's timeline until it ends, then its state (and answer); 0 only if it SUCCEEDED. */
async function follow(taskId: string, { tasks, print, signal }: SendDeps): Promise<number> {
  for await (const { event } of tasks.watchTask({ id: taskId }, { signal })) {
    if (event) print(formatEvent(event));
  }
  const ended = (await tasks.getTask({ id: taskId, view: TaskView.BASIC })).task!;
  print(describeTask(ended));
  if (ended.state !== TaskState.SUCCEEDED) return 1;
  print(`answer: ${ended.result?.answer ?? ""}`);
  return 0;
}

async function post(url: string, delivery: SampleDelivery, signal: AbortSignal): Promise<Response> {
  const timeout = abortAfter(signal, POST_TIMEOUT_MS);
  try {
    return await fetch(url, { method: "POST", headers: delivery.headers, body: delivery.body, signal: timeout.signal });
  } catch (err) {
    const reason = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new Error(`cannot reach the gateway at ${url} (${reason}); is it running? (${GATEWAY_HTTP_URL_VARIABLE})`);
  } finally {
    timeout.clear();
  }
}

/** What to check for the refusals a local setup runs into. */
function hint(status: number, variable: string): string {
  if (status === 404) return ` (does the gateway have ${variable}?)`;
  if (status === 401) return ` (is ${variable} the same here as for the gateway?)`;
  return "";
}

/** `task ID STATE: why`, the why being the reason of the task's last state change. */
function describeTask(task: Task): string {
  const reason = task.transitions.at(-1)?.reason;
  return `task ${task.id}  ${TaskState[task.state]}${reason ? `: ${reason}` : ""}`;
}
