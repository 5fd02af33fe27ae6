import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import type { Event } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Task, TaskSchema, TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";

/**
 * `hookmesh.tasks.v1.TaskService` as its contract describes it, in memory: SubmitEvent makes
 * one task per delivery (provider, source id, delivery id) and answers a repeat with the first
 * task, marked duplicate; ListTasks lists them. What it refuses as invalid is the test's to say.
 */
export class FakeTasks {
  readonly tasks: Task[] = [];
  /** The reason SubmitEvent refuses `event` with InvalidArgument, or undefined to take it. */
  refuse: (event: Event) => string | undefined = () => undefined;
  readonly client: Client<typeof TaskService>;

  constructor() {
    const transport = createRouterTransport((router) =>
      router.service(TaskService, {
        submitEvent: ({ event }) => this.submit(event),
        listTasks: () => ({ tasks: this.tasks }),
      }),
    );
    this.client = createClient(TaskService, transport);
  }

  private submit(event: Event | undefined) {
    if (!event) throw new ConnectError("event: is required", Code.InvalidArgument);
    const refusal = this.refuse(event);
    if (refusal) throw new ConnectError(refusal, Code.InvalidArgument);
    const same = (t: Task) =>
      t.event!.provider === event.provider &&
      t.event!.sourceId === event.sourceId &&
      t.event!.deliveryId === event.deliveryId;
    const existing = this.tasks.find(same);
    if (existing) return { task: existing, duplicate: true };
    const task = create(TaskSchema, { id: randomUUID(), state: TaskState.QUEUED, event });
    this.tasks.push(task);
    return { task, duplicate: false };
  }
}
