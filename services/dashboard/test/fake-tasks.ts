import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { Task, TaskEvent } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type TaskChange, TaskChangeSchema, TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";

/**
 * TaskService as the dashboard uses it, in memory: a change log with cursors, of which the
 * oldest can be dropped (so a stored cursor falls out of it), streams that can be cut, and the
 * tasks and timelines a resynchronization reads.
 */
export class FakeTasks {
  /** Every change, by position; `cursor` is its position, zero-padded. */
  readonly log: TaskChange[] = [];
  /** Changes before this position are gone from the log. */
  oldest = 0;
  readonly tasks = new Map<string, Task>();
  readonly timelines = new Map<string, TaskEvent[]>();
  /** The `after_cursor` of each WatchChanges call. */
  readonly cursorsAsked: string[] = [];
  /** Calls of WatchChanges to refuse with UNAVAILABLE before serving one. */
  failNext = 0;
  /** The actions asked for, e.g. `retry t1`. */
  readonly actions: string[] = [];
  /** Cuts each stream after this many changes. */
  cutAfter = Number.POSITIVE_INFINITY;
  private wake = new Set<() => void>();

  /** Appends a change: a new timeline event, with the task's record when it changed. */
  change(taskId: string, event: TaskEvent, task?: Task): TaskChange {
    const change = create(TaskChangeSchema, {
      cursor: String(this.log.length + 1).padStart(8, "0"),
      taskId,
      event,
      ...(task && { task }),
    });
    this.log.push(change);
    if (task) this.tasks.set(taskId, task);
    this.timelines.set(taskId, [...(this.timelines.get(taskId) ?? []), event]);
    for (const wake of this.wake) wake();
    return change;
  }

  routes = (router: ConnectRouter) =>
    router.service(TaskService, {
      watchChanges: (req, ctx) => this.watchChanges(req.afterCursor, ctx.signal),
      listTasks: (req) => {
        const all = [...this.tasks.values()].sort((a, b) => (a.id < b.id ? 1 : -1));
        const start = req.pageToken === "" ? 0 : Number(req.pageToken);
        const page = all.slice(start, start + 2);
        return { tasks: page, nextPageToken: start + 2 < all.length ? String(start + 2) : "" };
      },
      cancelTask: (req) => ({ task: this.act(`cancel ${req.id}`, req.id) }),
      retryTask: (req) => ({ task: this.act(`retry ${req.id}`, req.id) }),
      watchTask: async function* (this: FakeTasks, req: { id: string; afterEventId: string }) {
        const timeline = this.timelines.get(req.id);
        if (!timeline) throw new ConnectError("no task", Code.NotFound);
        const from = req.afterEventId === "" ? 0 : timeline.findIndex((e) => e.id === req.afterEventId) + 1;
        for (const event of timeline.slice(from)) yield { event };
      }.bind(this),
    });

  private act(action: string, id: string): Task {
    this.actions.push(action);
    const found = this.tasks.get(id);
    if (!found) throw new ConnectError(`task ${id} not found`, Code.NotFound);
    return found;
  }

  private async *watchChanges(afterCursor: string, signal: AbortSignal) {
    this.cursorsAsked.push(afterCursor);
    if (this.failNext > 0) {
      this.failNext--;
      throw new ConnectError("tasks is restarting", Code.Unavailable);
    }
    let next = afterCursor === "" ? this.oldest : Number(afterCursor);
    const missed = next < this.oldest;
    if (missed) next = this.oldest;
    let sent = 0;
    while (!signal.aborted) {
      while (next < this.log.length) {
        if (sent === this.cutAfter) return;
        const change = this.log[next]!;
        yield { change: sent === 0 && missed ? { ...change, missed: true } : change };
        next++;
        sent++;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          this.wake.delete(done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.wake.add(done);
        signal.addEventListener("abort", done);
      });
    }
  }
}
