import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import {
  type Task,
  type TaskEvent,
  TaskSchema,
  TaskStage,
  TaskState,
  TaskView,
} from "../../gen/hookmesh/tasks/v1/task_pb.js";
import {
  CancelTaskResponseSchema,
  GetTaskResponseSchema,
  ListTasksResponseSchema,
  RetryTaskResponseSchema,
  TaskService,
  type WatchTaskResponse,
  WatchTaskResponseSchema,
} from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { enumValue, type Print, required } from "./args.js";
import {
  type CommandSpec,
  getSubcommand,
  JSON_FLAG,
  jsonOf,
  nextPageHint,
  PAGING_FLAGS,
  PAGING_OPTIONS,
  pages,
  paging,
  parseCommand,
  runGroup,
  type Subcommand,
} from "./command.js";

export interface TasksIo {
  print: Print;
  /** Progress for people (reconnects), on stderr so that `--json` output stays one stream of documents. */
  note: Print;
  signal: AbortSignal;
}

/**
 * Codes after which a stream was cut rather than refused: `tasks tail` reconnects after them.
 * CANCELED is among them because a server shutting down resets its streams with CANCEL; the
 * caller's own Ctrl-C is told apart by its signal.
 */
const RECONNECT_CODES = new Set([Code.Unavailable, Code.Canceled, Code.Internal, Code.Unknown, Code.Aborted]);
const MAX_RECONNECTS = 10;
const RECONNECT_BASE_MS = 200;
const RECONNECT_MAX_MS = 5_000;

const JSON_HELP = "print the response as protobuf JSON";

const GET = {
  usage: "tasks get ID [--json]",
  summary: "One task with its event, result and attempts (`show` is the same command).",
  options: JSON_FLAG,
  flags: { json: `${JSON_HELP} (GetTaskResponse); without it the task alone` },
  example: "hookmesh tasks get 01JD7X3K9Q4T2V5B8N6M1C0ZRF --json",
} satisfies CommandSpec;

const LIST = {
  usage: "tasks list [--state S] [--provider P] [--page-size N] [--page-token T] [--all] [--json]",
  summary: "Tasks, newest first, a page at a time.",
  options: { state: { type: "string" }, provider: { type: "string" }, ...PAGING_OPTIONS },
  flags: {
    state: "only tasks in this state, e.g. dead, queued, succeeded",
    provider: "only tasks from this provider: github, slack, jira, sentry",
    ...PAGING_FLAGS,
  },
  example: "hookmesh tasks list --state dead --page-size 50",
} satisfies CommandSpec;

const TAIL = {
  usage: "tasks tail ID [AFTER] [--json]",
  summary:
    "Streams a task's timeline, each event after its event id, until the task ends. A cut stream\n" +
    "is resumed after the last event id printed; pass one as AFTER to start after it.",
  options: JSON_FLAG,
  flags: { json: `${JSON_HELP}, one WatchTaskResponse per line` },
  example: "hookmesh tasks tail 01JD7X3K9Q4T2V5B8N6M1C0ZRF | grep COMPLETED",
} satisfies CommandSpec;

const CANCEL = {
  usage: "tasks cancel ID [WHY] [--json]",
  summary: "Cancels a queued task, or stops a running one.",
  options: JSON_FLAG,
  flags: { json: `${JSON_HELP} (CancelTaskResponse)` },
  example: 'hookmesh tasks cancel 01JD7X3K9Q4T2V5B8N6M1C0ZRF "asked twice"',
} satisfies CommandSpec;

const RETRY = {
  usage: "tasks retry ID [--json]",
  summary: "Queues a FAILED, DEAD or CANCELED task again.",
  options: JSON_FLAG,
  flags: { json: `${JSON_HELP} (RetryTaskResponse)` },
  example: "hookmesh tasks retry 01JD7X3K9Q4T2V5B8N6M1C0ZRF",
} satisfies CommandSpec;

/** `hookmesh tasks list|get|tail|cancel|retry`. */
export async function tasksCommand(args: string[], tasks: Transport, { print, note, signal }: TasksIo): Promise<void> {
  const client = createClient(TaskService, tasks);
  const get = getSubcommand(
    {
      spec: GET,
      what: "task id",
      fetch: (id) => client.getTask({ id }),
      response: GetTaskResponseSchema,
      item: TaskSchema,
      itemOf: (res) => res.task!,
    },
    print,
  );
  const subcommands: Record<string, Subcommand> = {
    list: {
      spec: LIST,
      async run(rest) {
        const parsed = parseCommand(LIST, rest, print);
        if (!parsed) return;
        const { values } = parsed;
        const page = paging(values);
        const filters = {
          state: values.state ? enumValue(TaskState, "TASK_STATE_", values.state, "--state") : TaskState.UNSPECIFIED,
          provider: values.provider
            ? enumValue(Provider, "PROVIDER_", values.provider, "--provider")
            : Provider.UNSPECIFIED,
          view: TaskView.BASIC,
          pageSize: page.pageSize,
        };
        const all = create(ListTasksResponseSchema);
        for await (const res of pages(page, (pageToken) => client.listTasks({ ...filters, pageToken }))) {
          all.tasks.push(...res.tasks);
          all.nextPageToken = res.nextPageToken;
          if (!values.json) for (const task of res.tasks) print(formatTask(task));
        }
        if (values.json) return print(jsonOf(ListTasksResponseSchema, all));
        if (all.nextPageToken) print(nextPageHint("tasks list", rest, all.nextPageToken));
      },
    },
    get,
    show: get,
    tail: {
      spec: TAIL,
      async run(rest) {
        const parsed = parseCommand(TAIL, rest, print);
        if (!parsed) return;
        const [id, after] = parsed.positionals;
        await tailTask(client, required(id, "task id"), after ?? "", {
          print: parsed.values.json
            ? (res) => print(toJsonString(WatchTaskResponseSchema, res))
            : (res) => print(`${res.event!.id}  ${formatEvent(res.event!)}`),
          note,
          signal,
        });
      },
    },
    cancel: {
      spec: CANCEL,
      async run(rest) {
        const parsed = parseCommand(CANCEL, rest, print);
        if (!parsed) return;
        const [id, ...why] = parsed.positionals;
        const res = await client.cancelTask({ id: required(id, "task id"), reason: why.join(" ") });
        if (parsed.values.json) return print(jsonOf(CancelTaskResponseSchema, res));
        const task = res.task!;
        print(`${task.id} ${stateName(task.state)}${task.cancelRequested ? " (cancel requested)" : ""}`);
      },
    },
    retry: {
      spec: RETRY,
      async run(rest) {
        const parsed = parseCommand(RETRY, rest, print);
        if (!parsed) return;
        const res = await client.retryTask({ id: required(parsed.positionals[0], "task id") });
        if (parsed.values.json) return print(jsonOf(RetryTaskResponseSchema, res));
        print(`${res.task!.id} ${stateName(res.task!.state)}`);
      },
    },
  };
  return runGroup("tasks", "The tasks service's tasks and their timelines.", subcommands, args, print);
}

/**
 * Follows WatchTask until the task ends. When the stream is cut (the service restarted, the
 * connection dropped) it asks again for the events after the last one seen, so that none is
 * printed twice or missed; it gives up after MAX_RECONNECTS failures in a row. A first call
 * that fails before any event (a wrong URL, the service down) fails at once.
 */
async function tailTask(
  client: Client<typeof TaskService>,
  id: string,
  after: string,
  io: { print: (res: WatchTaskResponse) => void; note: Print; signal: AbortSignal },
): Promise<void> {
  let last = after;
  let failures = 0;
  let streamed = false;
  for (;;) {
    try {
      for await (const res of io.signal.aborted
        ? []
        : client.watchTask({ id, afterEventId: last }, { signal: io.signal })) {
        if (!res.event) continue;
        last = res.event.id;
        streamed = true;
        failures = 0;
        io.print(res);
      }
      return;
    } catch (err) {
      const error = ConnectError.from(err);
      if (io.signal.aborted) return;
      if (!streamed || !RECONNECT_CODES.has(error.code) || ++failures > MAX_RECONNECTS) throw error;
      io.note(`${Code[error.code]}: ${error.rawMessage}; resuming after event ${last || "(none yet)"}`);
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** (failures - 1));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

function formatTask(task: Task): string {
  const created = task.createTime ? timestampDate(task.createTime).toISOString() : "";
  const subject = task.event?.subject?.key || task.event?.eventType || "";
  return `${task.id}  ${created}  ${stateName(task.state).padEnd(9)}  ${subject}`;
}

export function formatEvent(event: TaskEvent): string {
  const time = event.time ? timestampDate(event.time).toISOString() : "";
  const prefix = `${time} #${event.attempt}`;
  switch (event.kind.case) {
    case "stage":
      return `${prefix} ${TaskStage[event.kind.value.stage]} ${event.kind.value.detail}`.trimEnd();
    case "output":
      return `${prefix} > ${event.kind.value.text}${event.kind.value.truncated ? " …" : ""}`;
    case "toolCall":
      return `${prefix} tool ${event.kind.value.name} ${event.kind.value.detail}`.trimEnd();
    case "usage":
      return `${prefix} usage $${event.kind.value.costUsd.toFixed(4)} in=${event.kind.value.inputTokens} out=${event.kind.value.outputTokens}`;
    default:
      return prefix;
  }
}

function stateName(state: TaskState): string {
  return TaskState[state] ?? String(state);
}
