import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import type { Logger } from "@hookmesh/kit";
import { annotateActiveSpan, inSpan, TRACE_ATTRIBUTES } from "@hookmesh/kit";
import { v7 as uuidv7 } from "uuid";
import { type Event, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  RunOutcome,
  StateTransitionSchema,
  type Task,
  type TaskEvent,
  type TaskResult,
  TaskSchema,
  TaskStage,
  TaskState,
  TaskView,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { BudgetSpent, RouteBudgets, RunOfTask } from "./budgets.js";
import { InvalidEventError, LeaseLostError, TaskNotFoundError, TaskStateError } from "./errors.js";
import type { RouteDecision } from "./routing/router.js";
import type { SubjectLocks } from "./subject-locks.js";
import { isFinal, type StoredTask, type TaskStore } from "./task-store.js";
import type { NewTaskEvent, Timeline } from "./timeline.js";
import type { QueuedJob, WorkQueue } from "./work-queue.js";

export interface EventRouter {
  /** The decision for each event, in order, from one reading of the rules. */
  routeAll(events: readonly Event[]): Promise<RouteDecision[]>;
}

/** One item's result in a batch: its task, or why it was refused for good. */
export type SubmitResult = { task: Task; duplicate: boolean; error?: undefined } | { error: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface EngineOptions {
  /** How long a lease lasts unless the worker heartbeats. */
  leaseMs: number;
  /** Attempts a task gets when its route names none, and what an operator retry grants. */
  defaultMaxAttempts: number;
  /** Total attempts past which an operator retry is refused. */
  maxAttemptsCeiling: number;
  /**
   * Lost leases (the worker stopped heartbeating) a task survives. They do not count against
   * its attempts: a worker's crash is not the task's failure; past this many the task is
   * dead-lettered, so that a task that brings down every worker does not run forever.
   */
  maxLostLeases: number;
  /** First retry's backoff; it doubles with each further attempt, up to `retryMaxMs`. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** How long a task whose subject is busy waits before it is looked at again. */
  subjectBusyDelayMs: number;
  /**
   * How often a waiting LeaseTasks call looks for work on its own: the work queue's bell wakes
   * it at once when any replica makes work ready; this covers rings lost with a connection.
   */
  pollMs: number;
  /**
   * How long a task whose routing rule has spent its daily budget waits before it is looked
   * at again (at most until the next UTC day), so that a raised budget applies within it.
   */
  budgetRecheckMs: number;
  /** The clock that decides which UTC day spend counts against. Default `Date.now`. */
  now?: () => number;
  /** Told of submissions, leases and ended tasks, for metrics. */
  observer?: TaskObserver;
  /**
   * Resolves once the store's replicas hold every write made so far (`TASKS_REDIS_WAIT_REPLICAS`);
   * a submission answers only after it, because the gateway drops its outbox entry on the answer.
   */
  waitForReplicas?: () => Promise<void>;
}

/** What the engine tells its metrics. */
export interface TaskObserver {
  /** A submission made a queued task, an ignored one, or was a duplicate. */
  submitted(outcome: "queued" | "ignored" | "duplicate"): void;
  /** A task was leased after waiting `queuedSeconds` since it was last queued (its submission, for a first attempt). */
  leased(queuedSeconds: number): void;
  /** A worker stopped heartbeating and its lease expired. */
  leaseExpired(): void;
  /** A worker's session ended and its lease was given back. */
  leaseReleased(): void;
  /** A task reached a final state. */
  ended(state: TaskState): void;
  /** A task was put back because its routing rule has spent its daily budget. */
  budgetSpent(routeId: string): void;
}

export interface LeaseGrant {
  task: Task;
  leaseId: string;
  expireTime: Timestamp;
}

const RETRYABLE_BY_OPERATOR: ReadonlySet<TaskState> = new Set([TaskState.FAILED, TaskState.DEAD, TaskState.CANCELED]);
/** Another attempt would likely spend as much again, whatever the worker thinks. */
const NEVER_RETRIED: ReadonlyMap<RunOutcome, string> = new Map([
  [RunOutcome.TIMED_OUT, "runs that time out are not retried"],
  [RunOutcome.COST_CAP, "runs that pass their cost cap are not retried"],
]);
const MAX_DELIVERY_ID_LENGTH = 256;
/** Between a session's id and the rest of a lease id taken under it. */
const SESSION_LEASE_SEPARATOR = ".";

/**
 * The task lifecycle. Submitting routes an event and makes it a durable task; workers lease,
 * heartbeat, report and finish tasks; operators cancel and retry them. Every transition is
 * recorded on the task and appended to its timeline.
 *
 * Crash safety comes from ordering: the task's state is written before its queue entry is
 * touched, and a queue entry whose task is already final is dropped when next leased, so a
 * crash between the two never runs a finished task nor loses a queued one (`reconcile`
 * re-queues QUEUED tasks that lost their entry).
 */
export class TaskEngine {
  private readonly now: () => number;

  constructor(
    private readonly store: TaskStore,
    private readonly timeline: Timeline,
    private readonly queue: WorkQueue,
    private readonly subjects: SubjectLocks,
    private readonly router: EventRouter,
    private readonly budgets: RouteBudgets,
    private readonly options: EngineOptions,
    private readonly logger: Logger,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** The task for `event`, created and queued (or recorded as ignored) if this delivery is new. */
  async submit(event: Event | undefined): Promise<{ task: Task; duplicate: boolean }> {
    const valid = validateEvent(event);
    const provider = Provider[valid.provider].toLowerCase();
    annotateActiveSpan({ [TRACE_ATTRIBUTES.provider]: provider, [TRACE_ATTRIBUTES.deliveryId]: valid.deliveryId });
    const [created] = await this.createAll([{ event: valid, taskId: uuidv7() }]);
    return created!;
  }

  /**
   * The tasks of a batch of events, each as `submit` would make it, with one result per item in
   * order. An invalid item gets its error and no task; the others are made regardless. The
   * batch costs a handful of round trips, not a handful per event: the rules are read once,
   * and each step's writes (records and indexes, timelines, queue entries) go out together.
   */
  async submitMany(items: readonly { event?: Event | undefined; taskId?: string }[]): Promise<SubmitResult[]> {
    const results: SubmitResult[] = new Array(items.length);
    const valid: { index: number; event: Event; taskId: string }[] = [];
    for (const [index, item] of items.entries()) {
      try {
        const event = validateEvent(item.event);
        if (item.taskId && !UUID.test(item.taskId)) throw new InvalidEventError("task_id", "must be a UUID");
        valid.push({ index, event, taskId: item.taskId || uuidv7() });
      } catch (err) {
        if (!(err instanceof InvalidEventError)) throw err;
        results[index] = { error: err.message };
      }
    }
    annotateActiveSpan({ "hookmesh.batch_size": items.length });
    if (valid.length === 1) {
      const { event } = valid[0]!;
      annotateActiveSpan({
        [TRACE_ATTRIBUTES.provider]: Provider[event.provider].toLowerCase(),
        [TRACE_ATTRIBUTES.deliveryId]: event.deliveryId,
      });
    }
    const created = await this.createAll(valid);
    for (const [i, { index }] of valid.entries()) results[index] = created[i]!;
    return results;
  }

  private async createAll(
    items: readonly { event: Event; taskId: string }[],
  ): Promise<{ task: Task; duplicate: boolean }[]> {
    if (items.length === 0) return [];
    const decisions = await inSpan(
      "tasks.route",
      { attributes: { "hookmesh.batch_size": items.length } },
      async (span) => {
        const routed = await this.router.routeAll(items.map((item) => item.event));
        if (routed.length === 1) {
          span.setAttribute("hookmesh.matched", routed[0]!.matched);
          if (routed[0]!.matched) span.setAttribute(TRACE_ATTRIBUTES.routeId, routed[0]!.route.id);
        }
        return routed;
      },
    );
    const now = timestampNow();
    const tasks = items.map(({ event, taskId }, i) => {
      const decision = decisions[i]!;
      const state = decision.matched ? TaskState.QUEUED : TaskState.IGNORED;
      const reason = decision.matched ? `matched route ${decision.route.id}` : decision.reason;
      return create(TaskSchema, {
        id: taskId,
        state,
        event,
        createTime: now,
        updateTime: now,
        transitions: [create(StateTransitionSchema, { state, time: now, reason })],
        ...(decision.matched && {
          routeId: decision.route.id,
          profile: this.budgets.profileWithRunCap(decision.route, decision.profile),
          prompt: decision.prompt,
          priority: decision.priority,
          maxAttempts: decision.maxAttempts || this.options.defaultMaxAttempts,
          ...(decision.repository && { repository: decision.repository }),
        }),
      });
    });
    // Each task with its first timeline events, in one script; issued together, so that the
    // store's connection sends them as one pipeline.
    const created = await Promise.all(
      tasks.map((task, i) => {
        const { event } = items[i]!;
        const decision = decisions[i]!;
        const received = event.receiveTime ?? now;
        const provider = Provider[event.provider].toLowerCase();
        const reason = task.transitions[0]!.reason;
        return this.store.create(
          task,
          this.timeline.prepare(task.id, [
            changed(stage(TaskStage.RECEIVED, `${provider} ${event.eventType} delivery ${event.deliveryId}`, received)),
            stage(TaskStage.VERIFIED, "signature verified by the gateway", received),
            decision.matched ? stage(TaskStage.ROUTED, reason) : stage(TaskStage.IGNORED, reason),
            ...(decision.matched ? [stage(TaskStage.QUEUED, `priority ${task.priority}`)] : []),
          ]),
        );
      }),
    );
    for (const [i, result] of created.entries()) {
      this.options.observer?.submitted(result.duplicate ? "duplicate" : decisions[i]!.matched ? "queued" : "ignored");
    }
    if (created.length === 1) {
      annotateActiveSpan({
        [TRACE_ATTRIBUTES.taskId]: created[0]!.task.id,
        [TRACE_ATTRIBUTES.routeId]: created[0]!.task.routeId,
      });
    }
    const toQueue: Task[] = [];
    await Promise.all(
      created.map(async (result, i) => {
        if (result.duplicate) {
          // The first submission may have stopped between storing the task and queuing it.
          const first = result.task;
          if (first.state === TaskState.QUEUED && !(await this.queue.isQueued(first.id))) toQueue.push(first);
          return;
        }
        if (decisions[i]!.matched) toQueue.push(tasks[i]!);
      }),
    );
    if (toQueue.length > 0) {
      const attributes =
        toQueue.length === 1
          ? { [TRACE_ATTRIBUTES.taskId]: toQueue[0]!.id, "hookmesh.priority": toQueue[0]!.priority }
          : { "hookmesh.batch_size": toQueue.length };
      await inSpan("tasks.enqueue", { attributes }, () => this.enqueueAll(toQueue));
    }
    await this.options.waitForReplicas?.();
    return created;
  }

  /** Cancels a queued task now, or asks the worker of a running one to stop. */
  async cancel(id: string, reason: string): Promise<Task> {
    const why = reason || "canceled by request";
    const task = await this.store.get(id, TaskView.BASIC);
    if (task.state === TaskState.CANCELED) return task;
    if (isFinal(task.state)) throw new TaskStateError(`task ${id} already ended ${TaskState[task.state]}`);
    if (task.state === TaskState.QUEUED && (await this.queue.removeWaiting(id))) {
      let canceledNow = false;
      const canceled = await this.store.update(
        id,
        (t) => {
          canceledNow = t.state === TaskState.QUEUED;
          if (canceledNow) transition(t, TaskState.CANCELED, why);
        },
        {
          append: (t) =>
            canceledNow
              ? this.timeline.prepare(id, [changed(stage(TaskStage.CANCELED, why, undefined, t.attempt))])
              : undefined,
        },
      );
      if (canceledNow) {
        this.options.observer?.ended(TaskState.CANCELED);
        return canceled;
      }
    }
    // Running (or leased a moment ago): the worker sees the request on its next heartbeat.
    return this.store.update(
      id,
      (t) => {
        if (!isFinal(t.state)) t.cancelRequested = true;
      },
      {
        append: (t) =>
          this.timeline.prepare(id, [
            changed(stage(TaskStage.CANCELED, `cancel requested: ${why}`, undefined, t.attempt)),
          ]),
      },
    );
  }

  /** Queues a failed, dead or canceled task again with a fresh budget of attempts, up to the ceiling. */
  async retry(id: string): Promise<Task> {
    const ceiling = this.options.maxAttemptsCeiling;
    const task = await this.store.update(
      id,
      (t) => {
        if (!RETRYABLE_BY_OPERATOR.has(t.state)) {
          throw new TaskStateError(
            `task ${id} is ${TaskState[t.state]}; only FAILED, DEAD or CANCELED tasks can be retried`,
          );
        }
        if (t.attempt >= ceiling) {
          throw new TaskStateError(
            `task ${id} has run ${t.attempt} attempts, the ceiling of ${ceiling} per task (TASKS_MAX_ATTEMPTS_CEILING)`,
          );
        }
        // Every run so far, lost or failed, is spent; the retry grants a fresh budget of both.
        t.maxAttempts = Math.min(t.attempt + this.options.defaultMaxAttempts, ceiling);
        t.lostLeases = 0;
        t.cancelRequested = false;
        transition(t, TaskState.QUEUED, "retried by operator");
      },
      {
        append: (t) =>
          this.timeline.prepare(id, [
            changed(stage(TaskStage.RETRIED, `${t.maxAttempts - t.attempt} more attempts`, undefined, t.attempt)),
            stage(TaskStage.QUEUED, `priority ${t.priority}`, undefined, t.attempt),
          ]),
      },
    );
    await this.queue.requeue(task.id, task.priority);
    return task;
  }

  /**
   * Leases up to `max` ready tasks to `workerId`, waiting up to `waitMs` for the first one.
   * Jobs that must not run (their task ended or was canceled meanwhile, or ran out of
   * attempts after lost leases) are settled on the way; a task whose subject is busy, or whose
   * routing rule has spent its daily budget, waits.
   */
  async lease(
    workerId: string,
    max: number,
    waitMs: number,
    signal: AbortSignal,
    sessionId = "",
  ): Promise<LeaseGrant[]> {
    const deadline = Date.now() + waitMs;
    const grants: LeaseGrant[] = [];
    while (grants.length < max && !signal.aborted) {
      // A session's leases carry its id, so that its end finds them without an index of its own.
      const leaseId = sessionId ? `${sessionId}${SESSION_LEASE_SEPARATOR}${randomUUID()}` : randomUUID();
      // Read before looking, so that work made ready while this call looks is not waited past.
      const rings = this.queue.rings;
      const queued = await this.queue.next(leaseId);
      if (queued !== undefined) {
        let grant: LeaseGrant | undefined;
        try {
          grant = await this.grant(queued, leaseId, workerId);
        } catch (err) {
          // The tasks leased so far are the caller's: a failure now must not strand them.
          if (grants.length === 0) throw err;
          this.logger.warn({ taskId: queued.taskId, err: (err as Error).message }, "leasing stopped early");
          break;
        }
        if (grant) grants.push(grant);
        continue;
      }
      if (grants.length > 0 || Date.now() >= deadline) break;
      await this.queue.waitForWork(rings, Math.min(this.options.pollMs, deadline - Date.now()), signal);
    }
    if (signal.aborted && grants.length > 0) {
      // The caller went away while its tasks were being leased: nobody will run them, so they go
      // back now rather than when their leases expire.
      await Promise.all(grants.map((grant) => this.giveBack(grant, workerId)));
      return [];
    }
    return grants;
  }

  /** Extends a lease; says whether the task was canceled meanwhile. */
  async heartbeat(taskId: string, leaseId: string): Promise<{ expireTime: Timestamp; cancelRequested: boolean }> {
    // One round trip for both: the task read counts only if the lease held.
    const [extended, task] = await Promise.all([
      this.queue.extend(taskId, leaseId),
      this.store.get(taskId, TaskView.BASIC).catch(missingAsUndefined),
    ]);
    if (!extended) throw new LeaseLostError(taskId);
    if (!task) throw new TaskNotFoundError(taskId);
    // A released lease's job may still be locked by it for a moment (see releaseLease).
    if (task.state !== TaskState.RUNNING) throw new LeaseLostError(taskId);
    await this.subjects.extend(subjectOf(task), leaseId);
    return { expireTime: this.expiry(), cancelRequested: task.cancelRequested };
  }

  /** Appends what the agent did to the timeline; says whether the task was canceled meanwhile. */
  async report(taskId: string, leaseId: string, events: readonly TaskEvent[]): Promise<{ cancelRequested: boolean }> {
    const { task } = await this.leasedTask(taskId, leaseId);
    const costs = events.flatMap(({ kind }) =>
      kind.case === "usage" && Number.isFinite(kind.value.costUsd) ? [kind.value.costUsd] : [],
    );
    // Independent writes: sent together, one round trip.
    await Promise.all([
      costs.length > 0 ? this.budgets.record(runOf(task), Math.max(...costs), this.now()) : undefined,
      this.timeline.append(
        taskId,
        events.map(({ time, kind }) => ({ time, kind, attempt: task.attempt })),
      ),
    ]);
    return { cancelRequested: task.cancelRequested };
  }

  async complete(taskId: string, leaseId: string, result: TaskResult | undefined): Promise<Task> {
    // The job is read with the task, for its end: no read of its own then.
    const [leased, queued] = await Promise.all([this.leasedTask(taskId, leaseId), this.queue.read(taskId)]);
    if (leased.task.state !== TaskState.RUNNING) return leased.task;
    await this.holdAndCountSpend(leased.task, leaseId, result);
    const done = await this.store.update(
      taskId,
      (t) => {
        t.result = result;
        t.workerId = "";
        transition(t, TaskState.SUCCEEDED, "agent succeeded");
      },
      {
        from: leased,
        append: (t) =>
          this.timeline.prepare(taskId, [changed(stage(TaskStage.COMPLETED, summary(result), undefined, t.attempt))]),
      },
    );
    this.options.observer?.ended(done.state);
    await this.release(done, queued, leaseId);
    return done;
  }

  /**
   * Ends an attempt as failed: canceled if a cancel was asked, queued again after a backoff
   * if retryable with attempts left, dead-lettered if retryable without, FAILED otherwise.
   */
  async fail(taskId: string, leaseId: string, result: TaskResult | undefined, retryable: boolean): Promise<Task> {
    // The job is read with the task, for its end: no read of its own then.
    const [leased, queued] = await Promise.all([this.leasedTask(taskId, leaseId), this.queue.read(taskId)]);
    if (leased.task.state !== TaskState.RUNNING) return leased.task;
    await this.holdAndCountSpend(leased.task, leaseId, result);
    const error = result?.error || "agent failed";
    const neverRetried = NEVER_RETRIED.get(result?.outcome ?? RunOutcome.UNSPECIFIED);
    let retryInMs = 0;
    const eventsOf = (failed: Task): NewTaskEvent[] => {
      const events: NewTaskEvent[] = [changed(stage(TaskStage.FAILED, error, undefined, failed.attempt))];
      if (failed.state === TaskState.QUEUED)
        events.push(stage(TaskStage.RETRY_SCHEDULED, `in ${retryInMs}ms`, undefined, failed.attempt));
      if (failed.state === TaskState.DEAD)
        events.push(
          stage(
            TaskStage.DEAD,
            `attempt ${failed.attempt} (lease ${leaseId}) failed: ${error}; ${outOfAttempts(failed)}`,
            undefined,
            failed.attempt,
          ),
        );
      if (failed.state === TaskState.CANCELED)
        events.push(stage(TaskStage.CANCELED, "agent stopped", undefined, failed.attempt));
      return events;
    };
    const failed = await this.store.update(
      taskId,
      (t) => {
        t.result = result;
        t.workerId = "";
        if (t.cancelRequested || result?.outcome === RunOutcome.CANCELED) {
          transition(t, TaskState.CANCELED, "canceled while running");
        } else if (neverRetried) {
          transition(t, TaskState.FAILED, `${error}; ${neverRetried}`);
        } else if (retryable && failedAttempts(t) < t.maxAttempts) {
          retryInMs = this.backoff(t.attempt);
          transition(
            t,
            TaskState.QUEUED,
            `attempt ${t.attempt} failed: ${error}; retrying in ${Math.round(retryInMs / 1000)}s`,
          );
        } else if (retryable) {
          transition(
            t,
            TaskState.DEAD,
            `attempt ${t.attempt} (lease ${leaseId}) failed: ${error}; ${outOfAttempts(t)}`,
          );
        } else {
          transition(t, TaskState.FAILED, error);
        }
      },
      { from: leased, append: (t) => this.timeline.prepare(taskId, eventsOf(t)) },
    );
    if (isFinal(failed.state)) this.options.observer?.ended(failed.state);
    if (failed.state === TaskState.QUEUED) {
      await Promise.all([
        this.queue.retryLater(queued, leaseId, retryInMs),
        this.subjects.release(subjectOf(failed), leaseId),
      ]);
    } else {
      await this.release(failed, queued, leaseId);
    }
    return failed;
  }

  /**
   * Gives back every lease taken under a worker's session, which ended: their tasks are queued
   * again at once instead of when the leases expire. Says how many were given back.
   */
  async releaseSession(sessionId: string, workerId: string): Promise<number> {
    const running = await this.store.idsInState(TaskState.RUNNING);
    const leases = await this.store.leasesOf(running);
    const ofSession = `${sessionId}${SESSION_LEASE_SEPARATOR}`;
    let released = 0;
    for (const [i, taskId] of running.entries()) {
      const leaseId = leases[i];
      if (!leaseId?.startsWith(ofSession)) continue;
      try {
        if (await this.releaseLease(taskId, leaseId, workerId)) released++;
      } catch (err) {
        // Its lease still expires: the task comes back then.
        this.logger.warn({ taskId, err: (err as Error).message }, "could not give back a lease of an ended session");
      }
    }
    return released;
  }

  /**
   * Takes a lease from a worker known dead and queues its task again, counted as a lost lease.
   * The lease is revoked first, so that anything its holder still sends is refused; the task
   * is queued only while it is still that worker's run.
   */
  private async releaseLease(taskId: string, leaseId: string, workerId: string): Promise<boolean> {
    if (!(await this.store.revokeLease(taskId, leaseId))) return false;
    const why = `attempt %d (lease ${leaseId}) lost: the session of worker ${workerId} ended (its connection closed)`;
    let released = false;
    const back = await this.store.update(
      taskId,
      (t) => {
        released = t.state === TaskState.RUNNING && t.workerId === workerId;
        if (!released) return;
        t.lostLeases += 1;
        t.workerId = "";
        transition(t, TaskState.QUEUED, why.replace("%d", String(t.attempt)));
      },
      {
        append: (t) =>
          released
            ? this.timeline.prepare(taskId, [
                changed(
                  stage(
                    TaskStage.LEASE_EXPIRED,
                    `${why.replace("%d", String(t.attempt))}; lost lease ${t.lostLeases} of ` +
                      `${this.options.maxLostLeases} allowed, not counted as a failed attempt`,
                    undefined,
                    t.attempt,
                  ),
                ),
              ])
            : undefined,
      },
    );
    if (!released) return false;
    this.options.observer?.leaseReleased();
    // Failing here leaves the job locked by the revoked lease until its lock expires; the
    // stalled-job check then returns it, and the task, QUEUED already, runs as usual.
    await this.queue
      .retryLater(taskId, leaseId, 0)
      .catch((err: Error) =>
        this.logger.warn({ taskId, err: err.message }, "a released task waits for its lease to expire"),
      );
    await this.subjects.release(subjectOf(back), leaseId);
    return true;
  }

  /** The task's timeline after `afterEventId`, then live, until the task ends or `signal` aborts. */
  async watch(taskId: string, afterEventId: string, signal: AbortSignal): Promise<AsyncGenerator<TaskEvent>> {
    await this.store.get(taskId, TaskView.BASIC);
    const ended = async () => isFinal((await this.store.get(taskId, TaskView.BASIC)).state);
    return this.timeline.watch(taskId, afterEventId, ended, signal);
  }

  /**
   * Re-queues QUEUED tasks whose queue entry is missing: a process that stopped between
   * storing a task and queuing it leaves such a task behind. Run at start-up.
   */
  async reconcile(): Promise<number> {
    let repaired = 0;
    for (const id of await this.store.idsInState(TaskState.QUEUED)) {
      if (await this.queue.isQueued(id)) continue;
      await this.enqueue(await this.store.get(id, TaskView.BASIC));
      repaired++;
    }
    if (repaired > 0) this.logger.warn({ repaired }, "re-queued tasks that had lost their queue entry");
    return repaired;
  }

  /**
   * Leases a task whose job `leaseId` just locked, in three round trips after the queue's: the
   * task read once (its bytes kept), the rule's budget read while the subject's lock is taken,
   * and one script that moves the task to RUNNING if it is still as read, records the lease and
   * appends the timeline's events. A task changed meanwhile is read again and the change
   * reapplied, as any update does.
   */
  private async grant(queued: QueuedJob, leaseId: string, workerId: string): Promise<LeaseGrant | undefined> {
    const { taskId } = queued;
    let read: StoredTask;
    try {
      read = await this.store.read(taskId);
    } catch (err) {
      if (!(err instanceof TaskNotFoundError)) {
        // The store failed, which says nothing about the task: it comes back when this lease
        // expires, instead of being dropped from the queue for good.
        await this.queue.retryLater(queued, leaseId, this.options.subjectBusyDelayMs).catch(() => {});
        throw err;
      }
      await this.queue.finish(queued, leaseId);
      return undefined;
    }
    let task = read.task;
    let from: StoredTask | undefined = read;
    if (isFinal(task.state)) {
      await this.queue.finish(queued, leaseId);
      return undefined;
    }
    const events: NewTaskEvent[] = [];
    if (task.state === TaskState.RUNNING) {
      // Only BullMQ's stalled-job check puts a RUNNING task's job back in the queue, and only
      // once its lease's lock has expired: its worker stopped heartbeating.
      const lostLease = (await this.store.leaseOf(taskId)) ?? "unknown";
      const lost = await this.store.update(
        taskId,
        (t) => {
          if (t.state !== TaskState.RUNNING) return;
          t.lostLeases += 1;
          t.workerId = "";
          transition(
            t,
            TaskState.QUEUED,
            `attempt ${t.attempt} (lease ${lostLease}) lost: worker ${task.workerId} stopped heartbeating`,
          );
        },
        { from },
      );
      if (lost.lostLeases > task.lostLeases) this.options.observer?.leaseExpired();
      events.push(
        changed(
          stage(
            TaskStage.LEASE_EXPIRED,
            `attempt ${lost.attempt} (lease ${lostLease}) lost: worker ${task.workerId} stopped heartbeating, its lease ` +
              `expired and the queue's stalled-job check returned the task; lost lease ${lost.lostLeases} of ` +
              `${this.options.maxLostLeases} allowed, not counted as a failed attempt`,
            undefined,
            lost.attempt,
          ),
        ),
      );
      task = lost;
      // Once per lost lease: the next update reads the task again rather than keep its bytes.
      from = undefined;
    }
    const deadWhy = whyDeadBeforeRun(task, this.options.maxLostLeases);
    if (task.cancelRequested || deadWhy) {
      const ended = await this.store.update(
        taskId,
        (t) => {
          t.workerId = "";
          if (t.cancelRequested) transition(t, TaskState.CANCELED, "canceled");
          else transition(t, TaskState.DEAD, deadWhy ?? "");
        },
        {
          from,
          append: (t) =>
            this.timeline.prepare(taskId, [
              ...events,
              changed(
                t.state === TaskState.CANCELED
                  ? stage(TaskStage.CANCELED, "canceled before it could run again", undefined, t.attempt)
                  : stage(TaskStage.DEAD, deadWhy ?? "", undefined, t.attempt),
              ),
            ]),
        },
      );
      if (isFinal(ended.state)) this.options.observer?.ended(ended.state);
      await this.queue.finish(queued, leaseId);
      return undefined;
    }
    const claim = await this.lockSubjectWithinBudget(task, leaseId);
    if (claim.spent) {
      await this.waitForBudget(task, queued, leaseId, claim.spent, events);
      return undefined;
    }
    if (!claim.locked) {
      await this.timeline.append(taskId, events);
      await this.queue.retryLater(queued, leaseId, this.options.subjectBusyDelayMs);
      return undefined;
    }
    const queuedSince = task.transitions.findLast((t) => t.state === TaskState.QUEUED)?.time;
    const running = await this.store.update(
      taskId,
      (t) => {
        t.attempt += 1;
        t.workerId = workerId;
        transition(t, TaskState.RUNNING, `leased by ${workerId}`);
      },
      {
        from,
        lease: leaseId,
        append: (t) =>
          this.timeline.prepare(taskId, [
            ...events,
            changed(stage(TaskStage.LEASED, `worker ${workerId}`, undefined, t.attempt)),
          ]),
      },
    );
    if (queuedSince) this.options.observer?.leased(Math.max(0, (Date.now() - timestampMs(queuedSince)) / 1000));
    return { task: running, leaseId, expireTime: this.expiry() };
  }

  /**
   * Reads the task's rule budget and takes its subject's lock at once, one round trip rather
   * than two; the lock is given straight back when the budget is spent or could not be read.
   */
  private async lockSubjectWithinBudget(
    task: Task,
    leaseId: string,
  ): Promise<{ spent: BudgetSpent; locked?: undefined } | { spent?: undefined; locked: boolean }> {
    const subject = subjectOf(task);
    const [budget, lock] = await Promise.allSettled([
      this.budgets.spent(task.routeId, this.now()),
      this.subjects.acquire(subject, leaseId),
    ]);
    const spent = budget.status === "fulfilled" ? budget.value : undefined;
    if (lock.status === "fulfilled" && lock.value && (spent || budget.status === "rejected")) {
      await this.subjects.release(subject, leaseId);
    }
    if (budget.status === "rejected") throw budget.reason;
    if (spent) return { spent };
    if (lock.status === "rejected") throw lock.reason;
    return { locked: lock.value };
  }

  /**
   * Puts back a task whose routing rule has spent its daily budget, to be looked at again
   * later (`budgetRecheckMs`, or the next UTC day if sooner), and says why in its timeline
   * once a day rather than at every look.
   */
  private async waitForBudget(
    task: Task,
    queued: QueuedJob,
    leaseId: string,
    spent: BudgetSpent,
    events: NewTaskEvent[],
  ): Promise<void> {
    const why =
      `route ${spent.routeId} spent $${spent.spentUsd.toFixed(2)} of its $${spent.limitUsd.toFixed(2)} daily budget ` +
      `on ${spent.day} (UTC); waiting for the next UTC day or a higher budget`;
    this.options.observer?.budgetSpent(spent.routeId);
    if (await this.budgets.firstWait(task.id, this.now())) {
      events.push(stage(TaskStage.QUEUED, why, undefined, task.attempt));
    }
    await this.timeline.append(task.id, events);
    await this.queue.retryLater(queued, leaseId, Math.max(1, Math.min(this.options.budgetRecheckMs, spent.resetsInMs)));
  }

  /**
   * Puts back a task leased to a caller that went away before it could be told: the attempt
   * never started, so it is neither counted nor lost.
   */
  private async giveBack(grant: LeaseGrant, workerId: string): Promise<void> {
    const { task, leaseId } = grant;
    const why = `lease ${leaseId} of attempt ${task.attempt} given back: worker ${workerId} went away before it was told`;
    const back = await this.store.update(
      task.id,
      (t) => {
        if (t.state !== TaskState.RUNNING || t.workerId !== workerId) return;
        t.attempt -= 1;
        t.workerId = "";
        transition(t, TaskState.QUEUED, why);
      },
      {
        append: (t) =>
          t.state === TaskState.QUEUED
            ? this.timeline.prepare(task.id, [changed(stage(TaskStage.QUEUED, why, undefined, t.attempt))])
            : undefined,
      },
    );
    if (back.state !== TaskState.QUEUED) return;
    await this.queue.retryLater(task.id, leaseId, 0);
    await this.subjects.release(subjectOf(task), leaseId);
  }

  /**
   * The task a lease is about, as stored, if `leaseId` is the one that leased it last: the
   * lease and the task read in one round trip.
   */
  private async leasedTask(taskId: string, leaseId: string): Promise<StoredTask> {
    const [holder, read] = await Promise.all([
      this.store.leaseOf(taskId),
      this.store.read(taskId).catch(missingAsUndefined),
    ]);
    if (holder !== leaseId) throw new LeaseLostError(taskId);
    if (!read) throw new TaskNotFoundError(taskId);
    return read;
  }

  /**
   * Makes sure `leaseId` still holds the task's job, and counts the run's spend, in one round
   * trip: a run's spend counts once however often it is reported, and counts even when its
   * lease turns out lost, because it was spent all the same.
   */
  private async holdAndCountSpend(task: Task, leaseId: string, result: TaskResult | undefined): Promise<void> {
    const [held] = await Promise.all([
      this.queue.extend(task.id, leaseId),
      this.budgets.record(runOf(task), result?.costUsd ?? 0, this.now()),
    ]);
    if (!held) throw new LeaseLostError(task.id);
  }

  /** Lets go of an ended task's job and of its subject, at once. */
  private async release(task: Task, queued: QueuedJob, leaseId: string): Promise<void> {
    await Promise.all([this.queue.finish(queued, leaseId), this.subjects.release(subjectOf(task), leaseId)]);
  }

  private async enqueue(task: Task): Promise<void> {
    await this.queue.enqueue(task.id, task.priority);
  }

  private async enqueueAll(tasks: readonly Task[]): Promise<void> {
    if (tasks.length === 0) return;
    await this.queue.enqueueAll(tasks.map((task) => ({ taskId: task.id, priority: task.priority })));
  }

  /** Exponential backoff with jitter: half fixed, half random, so retries spread out. */
  private backoff(attempt: number): number {
    const ceiling = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** (attempt - 1));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  private expiry(): Timestamp {
    return timestampFromDate(new Date(Date.now() + this.options.leaseMs));
  }
}

function validateEvent(event: Event | undefined): Event {
  if (!event) throw new InvalidEventError("event", "is required");
  if (event.provider === Provider.UNSPECIFIED || Provider[event.provider] === undefined) {
    throw new InvalidEventError("event.provider", "must be a known provider");
  }
  if (event.deliveryId === "") throw new InvalidEventError("event.delivery_id", "is required");
  if (event.deliveryId.length > MAX_DELIVERY_ID_LENGTH) {
    throw new InvalidEventError("event.delivery_id", `must be at most ${MAX_DELIVERY_ID_LENGTH} characters`);
  }
  return event;
}

function transition(task: Task, state: TaskState, reason: string): void {
  const time = timestampNow();
  task.state = state;
  task.updateTime = time;
  task.transitions.push(create(StateTransitionSchema, { state, time, attempt: task.attempt, reason }));
}

function stage(kind: TaskStage, detail: string, time?: Timestamp, attempt = 0): NewTaskEvent {
  return { time, attempt, kind: { case: "stage", value: { stage: kind, detail } } };
}

/**
 * Marks an event as recording a change to the task's record (its creation, state, result or
 * attempt), so that its entry in the change log carries the task: the event that reports an
 * update, not those appended with it to explain it (RETRY_SCHEDULED after FAILED).
 */
function changed(event: NewTaskEvent): NewTaskEvent {
  return { ...event, changedTask: true };
}

/** Attempts that ended in failure: every attempt started, but those whose lease was lost. */
function failedAttempts(task: Task): number {
  return task.attempt - task.lostLeases;
}

function outOfAttempts(task: Task): string {
  const lost = task.lostLeases > 0 ? ` (and ${task.lostLeases} lost leases, which do not count)` : "";
  return `${failedAttempts(task)} of ${task.maxAttempts} attempts failed${lost}, no attempts left`;
}

/** Why a task about to be leased must not run again, if it must not. */
function whyDeadBeforeRun(task: Task, maxLostLeases: number): string | undefined {
  if (task.lostLeases > maxLostLeases) {
    return (
      `lost its lease ${task.lostLeases} times, last on attempt ${task.attempt}, more than the ${maxLostLeases} ` +
      "allowed (TASKS_MAX_LOST_LEASES): a task whose workers keep dying is not run again"
    );
  }
  if (failedAttempts(task) >= task.maxAttempts) return outOfAttempts(task);
  return undefined;
}

/** A read's answer for a task that does not exist: none, so that a lost lease is what the caller is told first. */
function missingAsUndefined(err: unknown): undefined {
  if (err instanceof TaskNotFoundError) return undefined;
  throw err;
}

function runOf(task: Task): RunOfTask {
  return { routeId: task.routeId, taskId: task.id, attempt: task.attempt };
}

function subjectOf(task: Task): string {
  return task.event?.subject?.key ?? "";
}

function summary(result: TaskResult | undefined): string {
  if (!result) return "agent succeeded";
  const seconds = result.duration ? Number(result.duration.seconds) : 0;
  return `exit ${result.exitCode}, ${seconds}s, $${result.costUsd.toFixed(4)}`;
}
