import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, createClient, createRouterTransport } from "@connectrpc/connect";
import type { AgentProfile } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { type TaskEvent, TaskSchema } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import {
  type CompleteTaskRequest,
  type FailTaskRequest,
  type Lease,
  LeaseSchema,
  type ReportEventsRequest,
  WorkerService,
} from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";

/**
 * An in-memory WorkerService: hands out queued leases, answers heartbeats and event reports
 * (with cancel or a lost lease when a test asks for them), and records every call.
 */
export class FakeTasks {
  readonly leaseRequests: { maxTasks: number; held: number; time: number }[] = [];
  readonly heartbeats: { taskId: string; leaseId: string }[] = [];
  readonly reports: ReportEventsRequest[] = [];
  readonly completed: CompleteTaskRequest[] = [];
  readonly failed: FailTaskRequest[] = [];
  /** Task ids whose heartbeats and reports answer cancel_requested. */
  readonly cancel = new Set<string>();
  /** Task ids whose lease is gone: every call about them fails with FailedPrecondition. */
  readonly lost = new Set<string>();
  /** Heartbeats still to fail with Unavailable, by task id: the service is out of reach. */
  readonly unreachable = new Map<string, number>();
  /** When set, LeaseTasks fails with it. */
  leaseError: ConnectError | undefined;
  /** Leased and not yet completed or failed, and the most there ever were. */
  readonly held = new Set<string>();
  maxHeld = 0;
  private readonly queue: Lease[] = [];

  readonly client = createClient(
    WorkerService,
    createRouterTransport((router) => this.routes(router)),
  );

  add(
    id: string,
    prompt: string,
    options: { profile?: AgentProfile; heartbeatMs?: number; routeId?: string } = {},
  ): void {
    this.queue.push(
      create(LeaseSchema, {
        task: create(TaskSchema, { id, prompt, profile: options.profile, attempt: 1, routeId: options.routeId ?? "" }),
        leaseId: `lease-${id}`,
        expireTime: timestampFromMs(Date.now() + 60_000),
        heartbeatInterval: durationFromMs(options.heartbeatMs ?? 10_000),
      }),
    );
  }

  ended(): number {
    return this.completed.length + this.failed.length;
  }

  /** Every event reported for a task, in order. */
  events(taskId: string): TaskEvent[] {
    return this.reports.filter((r) => r.taskId === taskId).flatMap((r) => r.events);
  }

  routes(router: ConnectRouter): void {
    router.service(WorkerService, {
      leaseTasks: async (req, ctx) => {
        this.leaseRequests.push({ maxTasks: req.maxTasks, held: this.held.size, time: Date.now() });
        if (this.leaseError) throw this.leaseError;
        const deadline = Date.now() + durationMs(req.wait!);
        while (this.queue.length === 0 && Date.now() < deadline && !ctx.signal.aborted) await sleep(10);
        const leases = this.queue.splice(0, req.maxTasks);
        for (const lease of leases) this.held.add(lease.task!.id);
        this.maxHeld = Math.max(this.maxHeld, this.held.size);
        return { leases };
      },
      heartbeat: (req) => {
        this.heartbeats.push({ taskId: req.taskId, leaseId: req.leaseId });
        const failures = this.unreachable.get(req.taskId) ?? 0;
        if (failures > 0) {
          this.unreachable.set(req.taskId, failures - 1);
          throw new ConnectError("tasks service unreachable", Code.Unavailable);
        }
        this.checkLease(req.taskId);
        return { cancelRequested: this.cancel.has(req.taskId), expireTime: timestampFromMs(Date.now() + 60_000) };
      },
      reportEvents: (req) => {
        this.checkLease(req.taskId);
        this.reports.push(req);
        return { cancelRequested: this.cancel.has(req.taskId) };
      },
      completeTask: (req) => {
        this.checkLease(req.taskId);
        this.held.delete(req.taskId);
        this.completed.push(req);
        return {};
      },
      failTask: (req) => {
        this.checkLease(req.taskId);
        this.held.delete(req.taskId);
        this.failed.push(req);
        return {};
      },
    });
  }

  private checkLease(taskId: string): void {
    if (this.lost.has(taskId)) throw new ConnectError(`lease of ${taskId} is not held`, Code.FailedPrecondition);
  }
}
