import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  LeaseSchema,
  type OpenSessionResponse,
  OpenSessionResponseSchema,
  WorkerService,
} from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import type { TaskEngine } from "./engine.js";
import type { WorkerSessions } from "./worker-sessions.js";

const MAX_TASKS_PER_LEASE = 100;
const MAX_WAIT_MS = 30_000;
/** Session ids are the service's own UUIDs; anything else is refused before it names a key. */
const SESSION_ID = /^[0-9a-f-]{36}$/;

export interface WorkerRouteDeps {
  engine: TaskEngine;
  sessions: WorkerSessions;
  leaseMs: number;
  /** Aborted when this replica starts shutting down: its session streams end without releasing. */
  draining: AbortSignal;
}

export function workerServiceRoutes({ engine, sessions, leaseMs, draining }: WorkerRouteDeps) {
  const heartbeatInterval = durationFromMs(Math.floor(leaseMs / 3));
  const { pingMs, releaseAfterMs } = sessions.options;
  return (router: ConnectRouter) =>
    router.service(WorkerService, {
      async *openSession(req, ctx): AsyncGenerator<OpenSessionResponse> {
        if (!req.workerId) throw new ConnectError("worker_id is required", Code.InvalidArgument);
        if (req.sessionId && !SESSION_ID.test(req.sessionId)) {
          throw new ConnectError("session_id is not a session this service opened", Code.InvalidArgument);
        }
        const stream = await sessions.open(req.workerId, req.sessionId);
        const ended = AbortSignal.any([ctx.signal, draining]);
        // Once, from whichever comes first: the generator may be left suspended at a yield when
        // the connection goes, so its `finally` is not the only sign.
        let over = false;
        const end = () => {
          ended.removeEventListener("abort", end);
          if (over) return;
          over = true;
          sessions.ended(stream, draining.aborted && !ctx.signal.aborted);
        };
        ended.addEventListener("abort", end);
        try {
          yield create(OpenSessionResponseSchema, {
            sessionId: stream.id,
            resumed: stream.resumed,
            pingInterval: durationFromMs(pingMs),
            releaseAfter: durationFromMs(releaseAfterMs),
          });
          let refreshedAt = Date.now();
          while (!ended.aborted) {
            await sleep(pingMs, undefined, { signal: ended }).catch(() => {});
            if (ended.aborted) break;
            if (Date.now() - refreshedAt > REFRESH_EVERY_MS) {
              refreshedAt = Date.now();
              await sessions.refresh(stream);
            }
            yield create(OpenSessionResponseSchema, { sessionId: stream.id });
          }
        } finally {
          end();
        }
      },
      async leaseTasks(req, ctx) {
        if (!req.workerId) throw new ConnectError("worker_id is required", Code.InvalidArgument);
        if (req.maxTasks < 1 || req.maxTasks > MAX_TASKS_PER_LEASE) {
          throw new ConnectError(`max_tasks must be from 1 to ${MAX_TASKS_PER_LEASE}`, Code.InvalidArgument);
        }
        if (req.sessionId && !SESSION_ID.test(req.sessionId)) {
          throw new ConnectError("session_id is not a session this service opened", Code.InvalidArgument);
        }
        // Never wait past the caller's own deadline: an empty answer beats DeadlineExceeded.
        const callerLeft = ctx.timeoutMs() ?? MAX_WAIT_MS;
        const waitMs = Math.max(0, Math.min(req.wait ? durationMs(req.wait) : 0, MAX_WAIT_MS, callerLeft - 500));
        const grants = await engine.lease(req.workerId, req.maxTasks, waitMs, ctx.signal, req.sessionId);
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

/** How often an open session's record is kept alive (it lives an hour). */
const REFRESH_EVERY_MS = 10 * 60_000;
