import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type RedisClient, runScript, StoreUnavailableError } from "@hookmesh/kit";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type Task, TaskSchema, TaskState, TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { InvalidPageTokenError, storeCall, TASK_STORE, TaskNotFoundError } from "./errors.js";
import { taskKey, timelineKey } from "./keys.js";
import { APPEND_LUA, type PreparedAppend } from "./timeline.js";

export interface TaskStoreOptions {
  /** Every key this store touches starts with it; no other service uses it. */
  keyPrefix: string;
  /** How long a task (its body, timeline, lease and delivery key) is kept after it ends. */
  retentionMs: number;
  /** How long an IGNORED task keeps its raw body; at most `retentionMs`. */
  ignoredBodyRetentionMs: number;
}

export interface TaskFilter {
  provider?: Provider;
  state?: TaskState;
}

/** Listing never has a view: bodies (up to 25 MB each) are read one task at a time, by `get`. */
export interface ListOptions extends TaskFilter {
  pageSize: number;
  pageToken?: string;
}

/** A task as read, with the bytes it is stored as (see `TaskStore.read`). */
export interface StoredTask {
  task: Task;
  bytes: Buffer;
}

/** What goes with an update, in the same script: all of it, or nothing when the task changed meanwhile. */
export interface UpdateOptions {
  /**
   * The task as read a moment ago (`read`): the first try compares the stored task against its
   * bytes rather than reading it again; a task changed since costs one more try, as usual.
   */
  from?: StoredTask;
  /** The lease that holds the task from now on (the move to RUNNING). */
  lease?: string;
  /** The timeline events that tell of the change, made from the task as changed (Timeline.prepare). */
  append?: (changed: Task) => PreparedAppend | undefined;
}

export interface TaskPage {
  tasks: Task[];
  nextPageToken: string;
}

const SCAN_BATCH = 200;
/** Attempts at a compare-and-set update before giving up: only a hot task contends this much. */
const MAX_UPDATE_TRIES = 20;

/**
 * Creates a task for a delivery unless one exists, atomically: the delivery key, the task, its
 * raw body and its index entries are written in one script, so a crash never leaves a task
 * without its dedup key or the other way round. A task created final (IGNORED) gets its
 * deadline here; its body (argv[5]) goes sooner than the rest (argv[4]).
 * `create(keys, argv)` (Lua, to run inside a script): the existing task's id, or false when made.
 * keys: delivery, task, raw, expiry index, then the listing indexes.
 * argv: id, task, raw body, retention ms or "" when not final, raw body retention ms, deadline
 * (epoch ms) for the expiry index.
 */
const CREATE_LUA = `
local function create(keys, argv)
  local existing = redis.call('GET', keys[1])
  if existing then return existing end
  redis.call('SET', keys[1], argv[1])
  redis.call('SET', keys[2], argv[2])
  if #argv[3] > 0 then redis.call('SET', keys[3], argv[3]) end
  for i = 5, #keys do redis.call('ZADD', keys[i], 0, argv[1]) end
  if argv[4] ~= '' then
    redis.call('PEXPIRE', keys[1], argv[4])
    redis.call('PEXPIRE', keys[2], argv[4])
    redis.call('PEXPIRE', keys[3], argv[5])
    redis.call('ZADD', keys[4], argv[6], argv[1])
  end
  return false
end
`;

/** A create alone. KEYS and ARGV: create's. */
const CREATE_SCRIPT = `${CREATE_LUA}
return create(KEYS, ARGV)
`;

/**
 * A create and the first events of the task's timeline, in one step: the events are appended
 * only when the task was made (a duplicate's timeline is its first delivery's).
 * KEYS: create's seven, then the append's (timeline.ts). ARGV: create's six, then the append's.
 */
const CREATE_AND_APPEND_SCRIPT = `${CREATE_LUA}${APPEND_LUA}
local existing = create({unpack(KEYS, 1, 7)}, {unpack(ARGV, 1, 6)})
if existing then return existing end
append({KEYS[8], KEYS[9], KEYS[10]}, {unpack(ARGV, 7)})
return false
`;

/** KEYS: lease. ARGV: the lease id that must hold it. Keeps the key's expiry. */
const REVOKE_LEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], '', 'KEEPTTL')
return 1
`;

/**
 * Replaces a task only if it is still what the caller read, moving it between state indexes.
 * Entering a final state starts the task's retention: every key of the task expires together,
 * and the expiry index says when, for the sweep that trims the listing indexes. Leaving one (an
 * operator's retry) takes the deadline away again, so a QUEUED or RUNNING task never expires.
 * A lease given (only on the move to RUNNING, never final) is recorded in the same step, so a
 * RUNNING task is never without the lease that runs it.
 * `update(keys, argv)` (Lua, to run inside a script): 1 when replaced, 0 when the task changed.
 * keys: task, old state index, new state index, expiry index, raw, timeline, lease, delivery.
 * argv: task as read, task as changed, id, "final"/"" for before, "final"/"" for after, retention
 * ms, deadline (epoch ms), the lease now holding the task or "" to leave the lease as it is.
 */
const UPDATE_LUA = `
local function update(keys, argv)
  if redis.call('GET', keys[1]) ~= argv[1] then return 0 end
  redis.call('SET', keys[1], argv[2], 'KEEPTTL')
  if argv[8] ~= '' then redis.call('SET', keys[7], argv[8]) end
  if keys[2] ~= keys[3] then
    redis.call('ZREM', keys[2], argv[3])
    redis.call('ZADD', keys[3], 0, argv[3])
  end
  if argv[4] == '' and argv[5] ~= '' then
    for i = 5, 8 do redis.call('PEXPIRE', keys[i], argv[6]) end
    redis.call('PEXPIRE', keys[1], argv[6])
    redis.call('ZADD', keys[4], argv[7], argv[3])
  elseif argv[4] ~= '' and argv[5] == '' then
    for i = 5, 8 do redis.call('PERSIST', keys[i]) end
    redis.call('PERSIST', keys[1])
    redis.call('ZREM', keys[4], argv[3])
  end
  return 1
end
`;

/** An update alone. KEYS and ARGV: update's. */
const UPDATE_SCRIPT = `${UPDATE_LUA}
return update(KEYS, ARGV)
`;

/**
 * An update and the timeline events that tell of it, in one step: the events are appended only
 * if the update was made, right after it, so they are in the timeline in the order of the task's
 * changes, and cost no round trip of their own.
 * KEYS: update's eight, then the append's (timeline.ts). ARGV: update's eight, then the append's.
 */
const UPDATE_AND_APPEND_SCRIPT = `${UPDATE_LUA}${APPEND_LUA}
if update(KEYS, ARGV) == 0 then return 0 end
append({KEYS[9], KEYS[10], KEYS[11]}, {unpack(ARGV, 9)})
return 1
`;

/**
 * Takes the tasks whose deadline passed out of every listing index (their keys expired on
 * their own), one batch at a time. KEYS: expiry index, then every listing index.
 * ARGV: batch size, now (epoch ms).
 */
const SWEEP_SCRIPT = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[1])
if #ids == 0 then return 0 end
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], unpack(ids)) end
return #ids
`;

const FINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.SUCCEEDED,
  TaskState.FAILED,
  TaskState.CANCELED,
  TaskState.DEAD,
  TaskState.IGNORED,
]);

/** A final task has ended; its retention runs (an operator's retry may still revive FAILED, DEAD and CANCELED). */
export function isFinal(state: TaskState): boolean {
  return FINAL_STATES.has(state);
}

/** Expired tasks taken out of the indexes per sweep script call. */
const SWEEP_BATCH = 500;

/**
 * Tasks in Redis. A task is protobuf binary under `task:{id}` and its event's raw body lies
 * apart under `raw:{id}`, so that state changes rewrite a few kilobytes, not a 25 MB payload.
 * Ids are UUIDv7, so sorting them sorts by creation time, and the indexes are lexicographic
 * sorted sets (`index:all`, `index:provider:{n}`, `index:state:{n}`) listed newest first.
 *
 * Retention: a task that ends (or is created IGNORED) expires `retentionMs` later, with its
 * raw body, timeline, lease and delivery key; Redis deletes them itself. `index:expiry` holds
 * those deadlines, and `sweepExpired` takes the ids out of the listing indexes once they pass.
 * The delivery key goes with its task, not later: one that outlived it would answer a resubmit
 * as a duplicate of a task nobody can read. So SubmitEvent is idempotent for the retention,
 * which must cover the gateway's duplicate window (GATEWAY_DEDUP_WINDOW, 24 h by default);
 * a delivery resubmitted after both have passed makes a new task.
 */
export class TaskStore {
  private readonly prefix: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: TaskStoreOptions,
  ) {
    this.prefix = options.keyPrefix;
  }

  /**
   * Stores a new task unless its delivery (provider, source id, delivery id) has one already;
   * then returns that one, unchanged.
   */
  async create(task: Task, append?: PreparedAppend): Promise<{ task: Task; duplicate: boolean }> {
    const event = task.event!;
    const rawBody = event.rawBody;
    const stored = { ...task, event: { ...event, rawBody: new Uint8Array(0) } };
    const { retentionMs, ignoredBodyRetentionMs } = this.options;
    // An ignored event's body is kept only for a while, to debug a routing rule that did not
    // match: unmatched traffic is the volume anyone who can make a provider send webhooks
    // controls, and nothing ever runs from it.
    const rawRetentionMs =
      task.state === TaskState.IGNORED ? Math.min(ignoredBodyRetentionMs, retentionMs) : retentionMs;
    const keys = [
      this.deliveryKey(task),
      this.taskKey(task.id),
      this.rawKey(task.id),
      this.expiryIndex(),
      this.key("index", "all"),
      this.key("index", "provider", String(event.provider)),
      this.stateIndex(task.state),
    ];
    const args = [
      task.id,
      Buffer.from(toBinary(TaskSchema, stored)),
      Buffer.from(rawBody),
      isFinal(task.state) ? String(retentionMs) : "",
      String(rawRetentionMs),
      Date.now() + retentionMs,
    ];
    const existingId = await storeCall(() =>
      append
        ? runScript(this.redis, CREATE_AND_APPEND_SCRIPT, [...keys, ...append.keys], [...args, ...append.args])
        : runScript(this.redis, CREATE_SCRIPT, keys, args),
    );
    if (typeof existingId === "string") return { task: await this.get(existingId, TaskView.FULL), duplicate: true };
    return { task, duplicate: false };
  }

  async get(id: string, view: TaskView = TaskView.FULL): Promise<Task> {
    const [bytes, rawBody] = await storeCall(() =>
      view === TaskView.FULL
        ? Promise.all([this.redis.getBuffer(this.taskKey(id)), this.redis.getBuffer(this.rawKey(id))])
        : Promise.all([this.redis.getBuffer(this.taskKey(id)), null]),
    );
    if (bytes === null) throw new TaskNotFoundError(id);
    return withRawBody(fromBinary(TaskSchema, bytes), rawBody);
  }

  /**
   * The task without its raw body, with the bytes it is stored as: given to `update` as `from`,
   * they spare its first try a read.
   */
  async read(id: string): Promise<StoredTask> {
    const bytes = await storeCall(() => this.redis.getBuffer(this.taskKey(id)));
    if (bytes === null) throw new TaskNotFoundError(id);
    return { task: fromBinary(TaskSchema, bytes), bytes };
  }

  /**
   * Applies `change` to the current task and stores the result, unless the task changed in
   * between, in which case it reads again and reapplies. `change` mutates the task it is given
   * (or throws a domain error to refuse); the stored task, without its raw body, is returned.
   * See UpdateOptions for what may go with the change in the same step.
   */
  async update(id: string, change: (task: Task) => void, options: UpdateOptions = {}): Promise<Task> {
    let before = options.from?.bytes;
    for (let tries = 0; tries < MAX_UPDATE_TRIES; tries++) {
      if (before === undefined) {
        const read = await storeCall(() => this.redis.getBuffer(this.taskKey(id)));
        if (read === null) throw new TaskNotFoundError(id);
        before = read;
      }
      const task = fromBinary(TaskSchema, before);
      const oldState = task.state;
      change(task);
      const keys = [
        this.taskKey(id),
        this.stateIndex(oldState),
        this.stateIndex(task.state),
        this.expiryIndex(),
        this.rawKey(id),
        this.timelineKey(id),
        this.leaseKey(id),
        this.deliveryKey(task),
      ];
      const args = [
        before,
        Buffer.from(toBinary(TaskSchema, task)),
        id,
        isFinal(oldState) ? "final" : "",
        isFinal(task.state) ? "final" : "",
        String(this.options.retentionMs),
        String(Date.now() + this.options.retentionMs),
        options.lease ?? "",
      ];
      const append = options.append?.(task);
      const swapped = await storeCall(() =>
        append
          ? runScript(this.redis, UPDATE_AND_APPEND_SCRIPT, [...keys, ...append.keys], [...args, ...append.args])
          : runScript(this.redis, UPDATE_SCRIPT, keys, args),
      );
      if (swapped === 1) return task;
      before = undefined;
    }
    throw new StoreUnavailableError(
      TASK_STORE,
      new Error(`task ${id} changed ${MAX_UPDATE_TRIES} times while being updated`),
    );
  }

  /** A page of tasks, newest first. */
  async list(options: ListOptions): Promise<TaskPage> {
    const filter: TaskFilter = { provider: options.provider, state: options.state };
    const filterKey = `${filter.provider ?? 0}/${filter.state ?? 0}`;
    let after = options.pageToken ? decodePageToken(options.pageToken, filterKey) : undefined;
    // Walk the most selective index and check the other filter against its own index.
    const [walk, check] = this.indexesFor(filter);
    const ids: string[] = [];
    for (;;) {
      const batch = await storeCall(() =>
        this.redis.zrevrangebylex(walk, after === undefined ? "+" : `(${after}`, "-", "LIMIT", 0, SCAN_BATCH),
      );
      const kept = check === undefined ? batch : await this.membersOf(check, batch);
      ids.push(...kept.slice(0, options.pageSize - ids.length));
      after = batch.at(-1);
      if (ids.length === options.pageSize || batch.length < SCAN_BATCH) break;
    }
    const tasks = await this.getMany(ids);
    const more = ids.length === options.pageSize && (await this.hasMoreAfter(walk, check, ids.at(-1)!));
    return { tasks, nextPageToken: more ? encodePageToken(ids.at(-1)!, filterKey) : "" };
  }

  /** How many tasks (still within their retention) are in each state, read from the state indexes. */
  async countByState(states: readonly TaskState[]): Promise<Map<TaskState, number>> {
    const counts = await storeCall(async () => {
      const replies = await states
        .reduce((pipeline, state) => pipeline.zcard(this.stateIndex(state)), this.redis.pipeline())
        .exec();
      return (replies ?? []).map(([err, count]) => {
        if (err) throw err;
        return Number(count);
      });
    });
    return new Map(states.map((state, i) => [state, counts[i] ?? 0]));
  }

  async leaseOf(taskId: string): Promise<string | null> {
    return storeCall(() => this.redis.get(this.leaseKey(taskId)));
  }

  /** The leases holding each of `taskIds`, in one round trip. */
  async leasesOf(taskIds: string[]): Promise<(string | null)[]> {
    if (taskIds.length === 0) return [];
    return storeCall(() => this.redis.mget(taskIds.map((id) => this.leaseKey(id))));
  }

  /**
   * Takes a task's lease from its holder if `leaseId` still holds it, so that from then on the
   * holder's reports and results are refused; false when another lease holds it. Atomic: a
   * lease granted meanwhile is never taken.
   */
  async revokeLease(taskId: string, leaseId: string): Promise<boolean> {
    const revoked = await storeCall(() =>
      runScript(this.redis, REVOKE_LEASE_SCRIPT, [this.leaseKey(taskId)], [leaseId]),
    );
    return revoked === 1;
  }

  /**
   * Takes the tasks whose retention ended out of the listing indexes, and says how many. Run
   * by every replica on a timer; `lockMs` is both the lock that keeps replicas from sweeping
   * at once and the pace of sweeps (the lock is left to expire, not released).
   */
  async sweepExpired(lockMs: number): Promise<number> {
    const locked = await storeCall(() => this.redis.set(this.key("sweep-lock"), "1", "PX", lockMs, "NX"));
    if (locked === null) return 0;
    const indexes = [
      this.expiryIndex(),
      this.key("index", "all"),
      ...enumValues(Provider).map((provider) => this.key("index", "provider", String(provider))),
      ...enumValues(TaskState).map((state) => this.stateIndex(state)),
    ];
    let swept = 0;
    for (;;) {
      const removed = Number(
        await storeCall(() => runScript(this.redis, SWEEP_SCRIPT, indexes, [SWEEP_BATCH, Date.now()])),
      );
      swept += removed;
      if (removed < SWEEP_BATCH) return swept;
    }
  }

  /** Ids of every task in `state`, oldest first, for start-up reconciliation. */
  async idsInState(state: TaskState): Promise<string[]> {
    return storeCall(() => this.redis.zrangebylex(this.stateIndex(state), "-", "+"));
  }

  private indexesFor(filter: TaskFilter): [walk: string, check: string | undefined] {
    const byProvider = filter.provider ? this.key("index", "provider", String(filter.provider)) : undefined;
    const byState = filter.state ? this.stateIndex(filter.state) : undefined;
    if (byState && byProvider) return [byState, byProvider];
    return [byState ?? byProvider ?? this.key("index", "all"), undefined];
  }

  private async membersOf(index: string, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return ids;
    const scores = await storeCall(() => this.redis.zmscore(index, ...ids));
    return ids.filter((_, i) => scores[i] !== null);
  }

  private async hasMoreAfter(walk: string, check: string | undefined, last: string): Promise<boolean> {
    let after = last;
    for (;;) {
      const batch = await storeCall(() => this.redis.zrevrangebylex(walk, `(${after}`, "-", "LIMIT", 0, SCAN_BATCH));
      if (batch.length === 0) return false;
      if (check === undefined || (await this.membersOf(check, batch)).length > 0) return true;
      after = batch.at(-1)!;
    }
  }

  /** The tasks without their bodies; an id whose task expired since the index was read is skipped. */
  private async getMany(ids: string[]): Promise<Task[]> {
    if (ids.length === 0) return [];
    const tasks = await storeCall(() => this.redis.mgetBuffer(...ids.map((id) => this.taskKey(id))));
    return tasks.flatMap((bytes) => (bytes === null ? [] : [fromBinary(TaskSchema, bytes)]));
  }

  /** Encoded, so that no source id and delivery id pair can spell another's key. */
  private deliveryKey(task: Task): string {
    const event = task.event!;
    return this.key(
      "delivery",
      String(event.provider),
      encodeURIComponent(event.sourceId),
      encodeURIComponent(event.deliveryId),
    );
  }

  private taskKey(id: string): string {
    return taskKey(this.prefix, id);
  }

  private rawKey(id: string): string {
    return this.key("raw", id);
  }

  private timelineKey(id: string): string {
    return timelineKey(this.prefix, id);
  }

  private leaseKey(id: string): string {
    return this.key("lease", id);
  }

  private expiryIndex(): string {
    return this.key("index", "expiry");
  }

  private stateIndex(state: TaskState): string {
    return this.key("index", "state", String(state));
  }

  private key(...parts: string[]): string {
    return this.prefix + parts.join(":");
  }
}

/** Every value of a generated enum but its UNSPECIFIED zero. */
function enumValues(e: Record<string, string | number>): number[] {
  return Object.values(e).filter((value): value is number => typeof value === "number" && value !== 0);
}

function withRawBody(task: Task, rawBody: Buffer | null): Task {
  if (rawBody !== null && task.event) task.event.rawBody = new Uint8Array(rawBody);
  return task;
}

function encodePageToken(lastId: string, filterKey: string): string {
  return Buffer.from(`${filterKey}|${lastId}`).toString("base64url");
}

function decodePageToken(token: string, filterKey: string): string {
  const [tokenFilter, lastId] = Buffer.from(token, "base64url").toString().split("|");
  if (tokenFilter !== filterKey || !lastId) throw new InvalidPageTokenError();
  return lastId;
}
