import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Event } from "../../gen/hookmesh/events/v1/event_pb.js";
import type { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { WebhookRejection } from "./http-errors.js";

export interface Accepted {
  taskId: string;
  duplicate: boolean;
}

export interface IntakeOptions {
  /** How long the tasks service gets to make a delivery durable before the provider is told to retry. */
  submitTimeoutMs: number;
  /** Seconds a provider should wait before retrying a delivery that could not be made durable. */
  retryAfterSeconds: number;
}

/**
 * Hands verified events to the tasks service. A 2xx may only follow a durable task, so any
 * failure to get one becomes 503 with Retry-After: the provider keeps the delivery and retries.
 */
export class Intake {
  constructor(
    private readonly tasks: Client<typeof TaskService>,
    private readonly options: IntakeOptions,
  ) {}

  async submit(event: Event, signal: AbortSignal): Promise<Accepted> {
    try {
      const res = await this.tasks.submitEvent({ event }, { signal, timeoutMs: this.options.submitTimeoutMs });
      if (!res.task) throw new ConnectError("tasks answered without a task", Code.Internal);
      return { taskId: res.task.id, duplicate: res.duplicate };
    } catch (err) {
      const cause = ConnectError.from(err);
      if (cause.code === Code.InvalidArgument) {
        throw new WebhookRejection(400, "delivery rejected as invalid", cause.rawMessage);
      }
      throw new WebhookRejection(503, "delivery could not be made durable, retry later", `${Code[cause.code]}: ${cause.rawMessage}`, {
        "retry-after": String(this.options.retryAfterSeconds),
      });
    }
  }
}
