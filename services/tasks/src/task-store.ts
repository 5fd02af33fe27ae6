import { ReplyError, type Redis } from "ioredis";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { v7 as uuidv7 } from "uuid";
import { Provider, type Event } from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  StateTransitionSchema,
  TaskSchema,
  TaskState,
  TaskView,
  type Task,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { InvalidEventError, InvalidPageTokenError, StoreUnavailableError, TaskNotFoundError } from "./errors.js";

export interface TaskStoreOptions {
  /** Every key this store touches starts with it; no other service uses it. */
  keyPrefix: string;
  /** Attempts a new task gets before it is dead-lettered. */
  maxAttempts: number;
  /** The clock, injectable for tests. */
  now?: () => Date;
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

const MAX_DELIVERY_ID_LENGTH = 256;
const SCAN_BATCH = 200;

/**
 * Creates a task for a delivery unless one exists, atomically: the delivery key, the task and
 * its index entries are written in one script, so a crash never leaves a task without its
 * dedup key or the other way round.
 */
const SUBMIT_SCRIPT = `
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
return false
`;

/**
 * Tasks in Redis. A task is stored as protobuf binary under `task:{id}`; ids are UUIDv7, so
 * sorting them sorts by creation time, and the indexes are lexicographic sorted sets
 * (`index:all`, `index:provider:{n}`, `index:state:{n}`) that list pages newest first.
 */
export class TaskStore {
  private readonly prefix: string;
  private readonly now: () => Date;

  constructor(
    private readonly redis: Redis,
    private readonly options: TaskStoreOptions,
  ) {
    this.prefix = options.keyPrefix;
    this.now = options.now ?? (() => new Date());
  }

  /** The task for `event`, created if this delivery was never seen. */
  async submit(event: Event | undefined): Promise<{ task: Task; duplicate: boolean }> {
    const valid = validateEvent(event);
    const id = uuidv7();
    const time = timestampFromDate(this.now());
    const task = create(TaskSchema, {
      id,
      state: TaskState.QUEUED,
      event: valid,
      createTime: time,
      updateTime: time,
      maxAttempts: this.options.maxAttempts,
      transitions: [
        create(StateTransitionSchema, {
          state: TaskState.QUEUED,
          time,
          reason: `created from ${Provider[valid.provider].toLowerCase()} delivery ${valid.deliveryId}`,
        }),
      ],
    });
    const existingId = await this.call(() =>
      this.redis.eval(
        SUBMIT_SCRIPT,
        5,
        this.key("delivery", String(valid.provider), valid.deliveryId),
        this.taskKey(id),
        this.key("index", "all"),
        this.key("index", "provider", String(valid.provider)),
        this.key("index", "state", String(task.state)),
        id,
        Buffer.from(toBinary(TaskSchema, task)),
      ),
    );
    if (typeof existingId === "string") return { task: await this.get(existingId, TaskView.FULL), duplicate: true };
    return { task, duplicate: false };
  }

  async get(id: string, view: TaskView = TaskView.FULL): Promise<Task> {
    const bytes = await this.call(() => this.redis.getBuffer(this.taskKey(id)));
    if (bytes === null) throw new TaskNotFoundError(id);
    return applyView(fromBinary(TaskSchema, bytes), view);
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
      const batch = await this.call(() =>
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

  private indexesFor(filter: TaskFilter): [walk: string, check: string | undefined] {
    const byProvider = filter.provider ? this.key("index", "provider", String(filter.provider)) : undefined;
    const byState = filter.state ? this.key("index", "state", String(filter.state)) : undefined;
    if (byState && byProvider) return [byState, byProvider];
    return [byState ?? byProvider ?? this.key("index", "all"), undefined];
  }

  private async membersOf(index: string, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return ids;
    const scores = await this.call(() => this.redis.zmscore(index, ...ids));
    return ids.filter((_, i) => scores[i] !== null);
  }

  private async hasMoreAfter(walk: string, check: string | undefined, last: string): Promise<boolean> {
    let after = last;
    for (;;) {
      const batch = await this.call(() => this.redis.zrevrangebylex(walk, `(${after}`, "-", "LIMIT", 0, SCAN_BATCH));
      if (batch.length === 0) return false;
      if (check === undefined || (await this.membersOf(check, batch)).length > 0) return true;
      after = batch.at(-1)!;
    }
  }

  private async getMany(ids: string[], view: TaskView): Promise<Task[]> {
    if (ids.length === 0) return [];
    const values = await this.call(() => this.redis.mgetBuffer(...ids.map((id) => this.taskKey(id))));
    return values.flatMap((bytes) => (bytes === null ? [] : [applyView(fromBinary(TaskSchema, bytes), view)]));
  }

  private taskKey(id: string): string {
    return this.key("task", id);
  }

  private key(...parts: string[]): string {
    return this.prefix + parts.join(":");
  }

  /**
   * Runs a Redis call, turning connection failures into StoreUnavailableError. A reply error
   * is Redis refusing a command, a bug rather than an outage, so it stays as it is.
   */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      if (err instanceof ReplyError) throw err;
      throw new StoreUnavailableError(err);
    }
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

function applyView(task: Task, view: TaskView): Task {
  if (view !== TaskView.BASIC || !task.event) return task;
  task.event.rawBody = new Uint8Array(0);
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
