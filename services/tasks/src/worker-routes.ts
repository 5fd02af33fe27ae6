import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { LeaseSchema, WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import type { TaskEngine } from "./engine.js";

const MAX_TASKS_PER_LEASE = 100;
const MAX_WAIT_MS = 30_000;

export function workerServiceRoutes(engine: TaskEngine, leaseMs: number) {
  const heartbeatInterval = durationFromMs(Math.floor(leaseMs / 3));
  return (router: ConnectRouter) =>
    router.service(WorkerService, {
      async leaseTasks(req, ctx) {
        if (!req.workerId) throw new ConnectError("worker_id is required", Code.InvalidArgument);
        if (req.maxTasks < 1 || req.maxTasks > MAX_TASKS_PER_LEASE) {
          throw new ConnectError(`max_tasks must be from 1 to ${MAX_TASKS_PER_LEASE}`, Code.InvalidArgument);
        }
        // Never wait past the caller's own deadline: an empty answer beats DeadlineExceeded.
        const callerLeft = ctx.timeoutMs() ?? MAX_WAIT_MS;
        const waitMs = Math.max(0, Math.min(req.wait ? durationMs(req.wait) : 0, MAX_WAIT_MS, callerLeft - 500));
        const grants = await engine.lease(req.workerId, req.maxTasks, waitMs, ctx.signal);
        return {
          leases: grants.map((grant) => create(LeaseSchema, { ...grant, heartbeatInterval })),
        };
      },
      async heartbeat(req) {
        return engine.heartbeat(req.taskId, req.leaseId);
      },
      async reportEvents(req) {
        return engine.report(req.taskId, req.leaseId, req.events);
      },
      async completeTask(req) {
        return { task: await engine.complete(req.taskId, req.leaseId, req.result) };
      },
      async failTask(req) {
        return { task: await engine.fail(req.taskId, req.leaseId, req.result, req.retryable) };
      },
    });
}
