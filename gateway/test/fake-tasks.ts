import { randomUUID } from "node:crypto";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  createRouterTransport,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Event } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Task, TaskSchema, TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";

/**
 * `hookmesh.tasks.v1.TaskService` as its contract describes it, in memory: SubmitEvent makes
 * one task per delivery (provider, source id, delivery id) and answers a repeat with the first
 * task, marked duplicate; SubmitEvents does the same per item, with the task id it is given;
 * ListTasks lists them. What it refuses as invalid is the test's to say.
 */
export class FakeTasks {
  readonly tasks: Task[] = [];
  /** The size of each SubmitEvents batch, in order. */
  readonly batches: number[] = [];
  /** How many times each delivery id was submitted in a batch tasks answered. */
  readonly submissions = new Map<string, number>();
  /** SubmitEvents answers UNAVAILABLE while set, as a stopped tasks service would. */
  unavailable = false;
  /** SubmitEvents answers this much later: a slow tasks service. */
  delayMs = 0;
  /** SubmitEvents calls left to answer UNAVAILABLE (after the delay): a tasks replica failing a few calls. */
  failCalls = 0;
  /** The most SubmitEvents calls that were being answered at once. */
  mostAtOnce = 0;
  private atOnce = 0;
  /** The reason SubmitEvent refuses `event` with InvalidArgument, or undefined to take it. */
  refuse: (event: Event) => string | undefined = () => undefined;
  readonly client: Client<typeof TaskService>;

  constructor() {
    this.client = createClient(TaskService, createRouterTransport(this.routes));
  }

  /** The same service on a cleartext gRPC port on loopback, for a real gateway to call. */
  async listen(): Promise<{ url: string; close(): Promise<void> }> {
    const server = http2.createServer(connectNodeAdapter({ routes: this.routes }));
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const session of sessions) session.destroy();
        }),
    };
  }

  private readonly routes = (router: ConnectRouter) =>
    router.service(TaskService, {
      submitEvent: ({ event }) => this.submit(event),
      submitEvents: async ({ items }) => {
        if (this.unavailable) throw new ConnectError("tasks is down", Code.Unavailable);
        this.mostAtOnce = Math.max(this.mostAtOnce, ++this.atOnce);
        try {
          if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
        } finally {
          this.atOnce--;
        }
        if (this.failCalls > 0) {
          this.failCalls--;
          throw new ConnectError("tasks replica failed", Code.Unavailable);
        }
        this.batches.push(items.length);
        for (const { event } of items) {
          const id = event?.deliveryId ?? "";
          this.submissions.set(id, (this.submissions.get(id) ?? 0) + 1);
        }
        return {
          results: items.map(({ event, taskId }) => {
            try {
              return this.submit(event, taskId);
            } catch (err) {
              return { error: ConnectError.from(err).rawMessage };
            }
          }),
        };
      },
      listTasks: () => ({ tasks: this.tasks }),
    });

  private submit(event: Event | undefined, taskId = "") {
    if (!event) throw new ConnectError("event: is required", Code.InvalidArgument);
    const refusal = this.refuse(event);
    if (refusal) throw new ConnectError(refusal, Code.InvalidArgument);
    const same = (t: Task) =>
      t.event!.provider === event.provider &&
      t.event!.sourceId === event.sourceId &&
      t.event!.deliveryId === event.deliveryId;
    const existing = this.tasks.find(same);
    if (existing) return { task: existing, duplicate: true };
    const task = create(TaskSchema, { id: taskId || randomUUID(), state: TaskState.QUEUED, event });
    this.tasks.push(task);
    return { task, duplicate: false };
  }
}
