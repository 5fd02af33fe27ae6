import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { StoreUnavailableError } from "@hookmesh/kit";
import type { Redis } from "ioredis";
import type { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type Task, TaskSchema, type TaskState, TaskView } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { InvalidPageTokenError, storeCall, TASK_STORE, TaskNotFoundError } from "./errors.js";

export interface TaskStoreOptions {
  /** Every key this store touches starts with it; no other service uses it. */
  keyPrefix: string;
}

export interface TaskFilter {
  provider?: Provider;
  state?: TaskState;
}

export interface ListOptions extends TaskFilter {
  pageSize: number;
  pageToken?: string;
  view: TaskView;
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
 * without its dedup key or the other way round.
 */
const CREATE_SCRIPT = `
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
return false
`;

/** Replaces a task only if it is still what the caller read, moving it between state indexes. */
const UPDATE_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if KEYS[2] ~= KEYS[3] then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], 0, ARGV[3])
end
return 1
`;

/**
 * Tasks in Redis. A task is protobuf binary under `task:{id}` and its event's raw body lies
 * apart under `raw:{id}`, so that state changes rewrite a few kilobytes, not a 25 MB payload.
 * Ids are UUIDv7, so sorting them sorts by creation time, and the indexes are lexicographic
 * sorted sets (`index:all`, `index:provider:{n}`, `index:state:{n}`) listed newest first.
 */
export class TaskStore {
  private readonly prefix: string;

  constructor(
    private readonly redis: Redis,
    options: TaskStoreOptions,
  ) {
    this.prefix = options.keyPrefix;
  }

  /**
   * Stores a new task unless its delivery (provider, source id, delivery id) has one already;
   * then returns that one, unchanged.
   */
  async create(task: Task): Promise<{ task: Task; duplicate: boolean }> {
    const event = task.event!;
    const rawBody = event.rawBody;
    const stored = { ...task, event: { ...event, rawBody: new Uint8Array(0) } };
    const existingId = await storeCall(() =>
      this.redis.eval(
        CREATE_SCRIPT,
        6,
        // Encoded, so that no source id and delivery id pair can spell another's key.
        this.key(
          "delivery",
          String(event.provider),
          encodeURIComponent(event.sourceId),
          encodeURIComponent(event.deliveryId),
        ),
        this.taskKey(task.id),
        this.rawKey(task.id),
        this.key("index", "all"),
        this.key("index", "provider", String(event.provider)),
        this.stateIndex(task.state),
        task.id,
        Buffer.from(toBinary(TaskSchema, stored)),
        Buffer.from(rawBody),
      ),
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
   * Applies `change` to the current task and stores the result, unless the task changed in
   * between, in which case it reads again and reapplies. `change` mutates the task it is given
   * (or throws a domain error to refuse); the stored task, without its raw body, is returned.
   */
  async update(id: string, change: (task: Task) => void): Promise<Task> {
    for (let tries = 0; tries < MAX_UPDATE_TRIES; tries++) {
      const before = await storeCall(() => this.redis.getBuffer(this.taskKey(id)));
      if (before === null) throw new TaskNotFoundError(id);
      const task = fromBinary(TaskSchema, before);
      const oldState = task.state;
      change(task);
      const swapped = await storeCall(() =>
        this.redis.eval(
          UPDATE_SCRIPT,
          3,
          this.taskKey(id),
          this.stateIndex(oldState),
          this.stateIndex(task.state),
          before,
          Buffer.from(toBinary(TaskSchema, task)),
          id,
        ),
      );
      if (swapped === 1) return task;
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
    const tasks = await this.getMany(ids, options.view);
    const more = ids.length === options.pageSize && (await this.hasMoreAfter(walk, check, ids.at(-1)!));
    return { tasks, nextPageToken: more ? encodePageToken(ids.at(-1)!, filterKey) : "" };
  }

  /** Records which lease holds a task, kept after the task ends so a repeated completion can be recognised. */
  async setLease(taskId: string, leaseId: string): Promise<void> {
    await storeCall(() => this.redis.set(this.key("lease", taskId), leaseId));
  }

  async leaseOf(taskId: string): Promise<string | null> {
    return storeCall(() => this.redis.get(this.key("lease", taskId)));
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

  private async getMany(ids: string[], view: TaskView): Promise<Task[]> {
    if (ids.length === 0) return [];
    const [tasks, rawBodies] = await storeCall(() =>
      Promise.all([
        this.redis.mgetBuffer(...ids.map((id) => this.taskKey(id))),
        view === TaskView.FULL ? this.redis.mgetBuffer(...ids.map((id) => this.rawKey(id))) : [],
      ]),
    );
    return tasks.flatMap((bytes, i) =>
      bytes === null ? [] : [withRawBody(fromBinary(TaskSchema, bytes), rawBodies[i] ?? null)],
    );
  }

  private taskKey(id: string): string {
    return this.key("task", id);
  }

  private rawKey(id: string): string {
    return this.key("raw", id);
  }

  private stateIndex(state: TaskState): string {
    return this.key("index", "state", String(state));
  }

  private key(...parts: string[]): string {
    return this.prefix + parts.join(":");
  }
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
