import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { ErrorMapper } from "@hookmesh/kit";
import { TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import type { TaskEngine } from "./engine.js";
import {
  InvalidEventError,
  InvalidPageTokenError,
  LeaseLostError,
  TaskNotFoundError,
  TaskStateError,
} from "./errors.js";
import type { TaskStore } from "./task-store.js";

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;

export function taskServiceRoutes(engine: TaskEngine, store: TaskStore) {
  return (router: ConnectRouter) =>
    router.service(TaskService, {
      async submitEvent(req) {
        return engine.submit(req.event);
      },
      async getTask(req) {
        return { task: await store.get(req.id, req.view || TaskView.FULL) };
      },
      async listTasks(req) {
        if (req.pageSize < 0) throw new ConnectError("page_size must not be negative", Code.InvalidArgument);
        return store.list({
          pageSize: Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
          pageToken: req.pageToken || undefined,
          provider: req.provider || undefined,
          state: req.state || undefined,
          view: req.view || TaskView.BASIC,
        });
      },
      async cancelTask(req) {
        return { task: await engine.cancel(req.id, req.reason) };
      },
      async retryTask(req) {
        return { task: await engine.retry(req.id) };
      },
      async *watchTask(req, ctx) {
        for await (const event of await engine.watch(req.id, req.afterEventId, ctx.signal)) yield { event };
      },
    });
}

export const mapTaskError: ErrorMapper = (err) => {
  if (err instanceof InvalidEventError || err instanceof InvalidPageTokenError) {
    return new ConnectError(err.message, Code.InvalidArgument);
  }
  if (err instanceof TaskNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof LeaseLostError || err instanceof TaskStateError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  return undefined;
};
