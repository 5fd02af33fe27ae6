import { parseArgs } from "node:util";
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../../gen/hookmesh/tasks/v1/route_pb.js";
import { RouteService } from "../../gen/hookmesh/tasks/v1/route_service_pb.js";
import {
  type Task,
  type TaskEvent,
  TaskSchema,
  TaskStage,
  TaskState,
  TaskView,
} from "../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { enumValue, type Print, required } from "./args.js";

/** `hookmesh tasks list|show|tail|cancel|retry`. */
export async function tasksCommand(args: string[], tasks: Transport, print: Print, signal: AbortSignal): Promise<void> {
  const client = createClient(TaskService, tasks);
  const [sub, ...rest] = args;
  switch (sub) {
    case "list":
      return listTasks(client, rest, print);
    case "show":
      return print(
        toJsonString(TaskSchema, (await client.getTask({ id: required(rest[0], "task id") })).task!, {
          prettySpaces: 2,
        }),
      );
    case "tail":
      for await (const { event } of client.watchTask(
        { id: required(rest[0], "task id"), afterEventId: rest[1] ?? "" },
        { signal },
      )) {
        if (event) print(formatEvent(event));
      }
      return;
    case "cancel": {
      const { task } = await client.cancelTask({ id: required(rest[0], "task id"), reason: rest.slice(1).join(" ") });
      return print(`${task!.id} ${stateName(task!.state)}${task!.cancelRequested ? " (cancel requested)" : ""}`);
    }
    case "retry": {
      const { task } = await client.retryTask({ id: required(rest[0], "task id") });
      return print(`${task!.id} ${stateName(task!.state)}`);
    }
    default:
      throw new Error(`unknown tasks command "${sub ?? ""}": use list, show, tail, cancel or retry`);
  }
}

/** `hookmesh routes list|get|delete`. */
export async function routesCommand(args: string[], tasks: Transport, print: Print): Promise<void> {
  const client = createClient(RouteService, tasks);
  const [sub, id] = args;
  switch (sub) {
    case "list":
      for (const route of (await client.listRoutes({})).routes) {
        const trigger = route.trigger?.kind.case ?? "none";
        print(
          `${route.id.padEnd(24)} ${String(route.priority).padStart(4)}  ${Provider[route.provider].toLowerCase().padEnd(7)} ${trigger}${route.disabled ? "  (disabled)" : ""}`,
        );
      }
      return;
    case "get":
      return print(
        toJsonString(RouteSchema, (await client.getRoute({ id: required(id, "route id") })).route!, {
          prettySpaces: 2,
        }),
      );
    case "delete":
      await client.deleteRoute({ id: required(id, "route id") });
      return print(`deleted ${id}`);
    default:
      throw new Error(`unknown routes command "${sub ?? ""}": use list, get or delete`);
  }
}

async function listTasks(client: Client<typeof TaskService>, args: string[], print: Print): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { state: { type: "string" }, provider: { type: "string" }, limit: { type: "string", default: "20" } },
  });
  const { tasks } = await client.listTasks({
    pageSize: Number(values.limit),
    state: values.state ? enumValue(TaskState, "TASK_STATE_", values.state, "--state") : TaskState.UNSPECIFIED,
    provider: values.provider ? enumValue(Provider, "PROVIDER_", values.provider, "--provider") : Provider.UNSPECIFIED,
    view: TaskView.BASIC,
  });
  for (const task of tasks) print(formatTask(task));
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
