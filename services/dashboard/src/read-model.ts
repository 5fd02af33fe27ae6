import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskSchema,
  TaskStage,
  TaskState,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { Queryable } from "./db.js";

/** States a task stays in until an operator retries it (or for good); a watch of it ends there. */
export const FINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.SUCCEEDED,
  TaskState.FAILED,
  TaskState.CANCELED,
  TaskState.DEAD,
  TaskState.IGNORED,
]);

/** Stage events that end an attempt's run. */
const RUN_ENDS: ReadonlySet<TaskStage> = new Set([
  TaskStage.COMPLETED,
  TaskStage.FAILED,
  TaskStage.CANCELED,
  TaskStage.LEASE_EXPIRED,
]);

/**
 * Stores the task's record unless the stored one is newer: records from a resynchronization and
 * from the change feed may arrive in either order, and the newest wins.
 */
export async function upsertTask(q: Queryable, task: Task): Promise<void> {
  const event = task.event;
  const subject = event?.subject;
  const github = subject?.ref.case === "github" ? subject.ref.value : undefined;
  const repository = task.repository
    ? `${task.repository.owner}/${task.repository.repo}`
    : github && github.owner !== ""
      ? `${github.owner}/${github.repo}`
      : "";
  const firstLease = task.transitions
    .filter((t) => t.state === TaskState.RUNNING && t.time)
    .map((t) => timestampMs(t.time!))
    .sort((a, b) => a - b)[0];
  const traceparent = event?.traceContext?.traceparent ?? "";
  const result = task.result;
  await q.query(
    `INSERT INTO tasks (id, provider, state, route_id, subject_key, title, repository, search_text, create_time,
       update_time, first_lease_time, cost_usd, input_tokens, output_tokens, trace_id, task)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
     ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, state = excluded.state, route_id = excluded.route_id,
       subject_key = excluded.subject_key, title = excluded.title, repository = excluded.repository,
       search_text = excluded.search_text, update_time = excluded.update_time,
       first_lease_time = excluded.first_lease_time, cost_usd = excluded.cost_usd,
       input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, trace_id = excluded.trace_id,
       task = excluded.task
     WHERE tasks.update_time <= excluded.update_time`,
    [
      task.id,
      event?.provider ?? 0,
      task.state,
      task.routeId,
      subject?.key ?? "",
      subject?.title ?? "",
      repository,
      [task.prompt, event?.text ?? "", result?.answer ?? ""].join("\n").toLowerCase(),
      dateOf(task.createTime ? timestampMs(task.createTime) : Date.now()),
      dateOf(task.updateTime ? timestampMs(task.updateTime) : Date.now()),
      firstLease === undefined ? null : dateOf(firstLease),
      result?.costUsd ?? 0,
      String(result?.inputTokens ?? 0n),
      String(result?.outputTokens ?? 0n),
      /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(traceparent)?.[1] ?? "",
      Buffer.from(toBinary(TaskSchema, stripRawBody(task))),
    ],
  );
}

function stripRawBody(task: Task): Task {
  if (!task.event || task.event.rawBody.length === 0) return task;
  return { ...task, event: { ...task.event, rawBody: new Uint8Array() } };
}

/** Adds an event to its task's timeline once (by its id), and the run times it marks. Returns whether it was new. */
export async function insertEvent(q: Queryable, taskId: string, event: TaskEvent, task?: Task): Promise<boolean> {
  const time = dateOf(event.time ? timestampMs(event.time) : Date.now());
  const inserted = await q.query(
    `INSERT INTO task_events (task_id, event_id, time, attempt, event, task) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (task_id, event_id) DO NOTHING RETURNING seq`,
    [
      taskId,
      event.id,
      time,
      event.attempt,
      Buffer.from(toBinary(TaskEventSchema, event)),
      task ? Buffer.from(toBinary(TaskSchema, stripRawBody(task))) : null,
    ],
  );
  if (inserted.length === 0) return false;
  if (event.kind.case === "stage" && event.attempt > 0) {
    const stage = event.kind.value.stage;
    if (stage === TaskStage.STARTED) {
      await q.query(
        `INSERT INTO attempts (task_id, attempt, start_time) VALUES ($1, $2, $3)
         ON CONFLICT (task_id, attempt) DO UPDATE SET start_time = excluded.start_time`,
        [taskId, event.attempt, time],
      );
    } else if (RUN_ENDS.has(stage)) {
      await q.query(
        `INSERT INTO attempts (task_id, attempt, end_time) VALUES ($1, $2, $3)
         ON CONFLICT (task_id, attempt) DO UPDATE SET end_time = coalesce(attempts.end_time, excluded.end_time)`,
        [taskId, event.attempt, time],
      );
    }
  }
  return true;
}

export interface TaskFilters {
  provider: Provider;
  state: TaskState;
  routeId: string;
  subject: string;
  text: string;
}

/** A page of tasks, newest first (ids sort by creation), after the task id `afterId` when given. */
export async function listTasks(
  q: Queryable,
  filters: TaskFilters,
  pageSize: number,
  afterId: string | undefined,
): Promise<{ tasks: Task[]; more: boolean; total: number }> {
  const params: unknown[] = [];
  const where: string[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (filters.provider !== 0) where.push(`provider = ${param(filters.provider)}::int`);
  if (filters.state !== 0) where.push(`state = ${param(filters.state)}::int`);
  if (filters.routeId !== "") where.push(`route_id = ${param(filters.routeId)}::text`);
  if (filters.subject !== "") {
    where.push(`strpos(lower(subject_key || ' ' || title), ${param(filters.subject.toLowerCase())}::text) > 0`);
  }
  if (filters.text !== "") where.push(`strpos(search_text, ${param(filters.text.toLowerCase())}::text) > 0`);
  const filtered = where.length === 0 ? "TRUE" : where.join(" AND ");
  const [count] = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM tasks WHERE ${filtered}`, params);
  const pageParams = [...params];
  const page = afterId === undefined ? "" : ` AND id < $${pageParams.push(afterId)}::text`;
  const rows = await q.query<{ task: Uint8Array }>(
    `SELECT task FROM tasks WHERE ${filtered}${page} ORDER BY id DESC LIMIT $${pageParams.push(pageSize + 1)}::int`,
    pageParams,
  );
  return {
    tasks: rows.slice(0, pageSize).map((row) => fromBinary(TaskSchema, row.task)),
    more: rows.length > pageSize,
    total: count?.n ?? 0,
  };
}

export async function getTask(q: Queryable, id: string): Promise<{ task: Task; traceId: string } | undefined> {
  const [row] = await q.query<{ task: Uint8Array; trace_id: string }>(
    "SELECT task, trace_id FROM tasks WHERE id = $1::text",
    [id],
  );
  return row && { task: fromBinary(TaskSchema, row.task), traceId: row.trace_id };
}

export interface StoredEvent {
  /** The event's position in the read model's timeline of its task. */
  seq: number;
  event: TaskEvent;
  /** The task after the event, when the event changed it. */
  task: Task | undefined;
}

/** A task's events in the order they were applied, after position `afterSeq`. */
export async function eventsAfter(q: Queryable, taskId: string, afterSeq = 0): Promise<StoredEvent[]> {
  const rows = await q.query<{ seq: string | number; event: Uint8Array; task: Uint8Array | null }>(
    "SELECT seq, event, task FROM task_events WHERE task_id = $1::text AND seq > $2::bigint ORDER BY seq",
    [taskId, afterSeq],
  );
  return rows.map((row) => ({
    seq: Number(row.seq),
    event: fromBinary(TaskEventSchema, row.event),
    task: row.task === null ? undefined : fromBinary(TaskSchema, row.task),
  }));
}

/** The position of one of a task's events; undefined when the read model does not have it. */
export async function eventSeq(q: Queryable, taskId: string, eventId: string): Promise<number | undefined> {
  const [row] = await q.query<{ seq: string | number }>(
    "SELECT seq FROM task_events WHERE task_id = $1::text AND event_id = $2::text",
    [taskId, eventId],
  );
  return row && Number(row.seq);
}

/** The id of the last event of a task the read model holds; "" for none. */
export async function lastEventId(q: Queryable, taskId: string): Promise<string> {
  const [row] = await q.query<{ event_id: string }>(
    "SELECT event_id FROM task_events WHERE task_id = $1::text ORDER BY seq DESC LIMIT 1",
    [taskId],
  );
  return row?.event_id ?? "";
}

function dateOf(ms: number): Date {
  return new Date(ms);
}
