import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { type ErrorMapper, peerKey } from "@hookmesh/kit";
import { TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { type ChangeLog, parseCursor } from "./change-log.js";
import type { TaskEngine } from "./engine.js";
import {
  InvalidCursorError,
  InvalidEventError,
  InvalidPageTokenError,
  LeaseLostError,
  TaskNotFoundError,
  TaskStateError,
  TooManyWatchesError,
} from "./errors.js";
import type { TaskStore } from "./task-store.js";
import type { WatchQuota } from "./watches.js";

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;
/** SubmitEvents' largest batch, as task_service.proto says. */
const MAX_BATCH = 500;

/**
 * Who a stream counts against: the caller's proven identity; on a cleartext port, which
 * listens on loopback only where every caller has the same address, one shared budget.
 */
function callerOf(ctx: HandlerContext): string {
  return ctx.values.get(peerKey)?.id ?? "unauthenticated";
}

export interface ChangeStreams {
  log: ChangeLog;
  quota: WatchQuota;
  /** Aborts when the server starts to drain: change streams never end on their own, so they end then. */
  draining: AbortSignal;
}

export function taskServiceRoutes(engine: TaskEngine, store: TaskStore, watches: WatchQuota, changes: ChangeStreams) {
  return (router: ConnectRouter) =>
    router.service(TaskService, {
      async submitEvent(req) {
        return engine.submit(req.event);
      },
      async submitEvents(req) {
        if (req.items.length === 0 || req.items.length > MAX_BATCH) {
          throw new ConnectError(`items: between 1 and ${MAX_BATCH} are required`, Code.InvalidArgument);
        }
        const results = await engine.submitMany(req.items);
        return {
          results: results.map((result) => {
            if (result.error !== undefined) return { error: result.error };
            // The basic view: a batch's answer would otherwise carry every raw body back.
            if (result.task.event) result.task.event.rawBody = new Uint8Array(0);
            return { task: result.task, duplicate: result.duplicate };
          }),
        };
      },
      async getTask(req) {
        return { task: await store.get(req.id, req.view || TaskView.FULL) };
      },
      async listTasks(req) {
        if (req.pageSize < 0) throw new ConnectError("page_size must not be negative", Code.InvalidArgument);
        // A page could otherwise carry 500 raw bodies of up to 25 MB each.
        if (req.view === TaskView.FULL) {
          throw new ConnectError(
            "view: ListTasks does not return raw bodies; use TASK_VIEW_BASIC, and GetTask for a task's raw body",
            Code.InvalidArgument,
          );
        }
        return store.list({
          pageSize: Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
          pageToken: req.pageToken || undefined,
          provider: req.provider || undefined,
          state: req.state || undefined,
        });
      },
      async cancelTask(req) {
        return { task: await engine.cancel(req.id, req.reason) };
      },
      async retryTask(req) {
        return { task: await engine.retry(req.id) };
      },
      async *watchTask(req, ctx) {
        const release = watches.admit(callerOf(ctx));
        try {
          for await (const event of await engine.watch(req.id, req.afterEventId, ctx.signal)) yield { event };
        } finally {
          release();
        }
      },
      async *watchChanges(req, ctx) {
        const afterCursor = parseCursor(req.afterCursor);
        const release = changes.quota.admit(callerOf(ctx));
        const signal = AbortSignal.any([ctx.signal, changes.draining]);
        try {
          for await (const change of changes.log.watch(afterCursor, signal)) yield { change };
        } finally {
          release();
        }
      },
    });
}

export const mapTaskError: ErrorMapper = (err) => {
  if (err instanceof InvalidEventError || err instanceof InvalidPageTokenError || err instanceof InvalidCursorError) {
    return new ConnectError(err.message, Code.InvalidArgument);
  }
  if (err instanceof TaskNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof TooManyWatchesError) return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof LeaseLostError || err instanceof TaskStateError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  return undefined;
};
