import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type RedisClient, runScript } from "@hookmesh/kit";
import { type TaskEvent, TaskEventSchema } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { storeCall } from "./errors.js";
import { changeLogKey, taskKey, timelineKey } from "./keys.js";
import { Doorbell, type TimelineSignals } from "./watches.js";

export interface TimelineOptions {
  keyPrefix: string;
  /** Longest text kept in one output or tool-call event; longer text is cut and marked. */
  maxTextBytes: number;
  /** Events kept per task; the oldest go first. */
  maxEvents: number;
  /** Changes the change log keeps, across all tasks; the oldest go first. */
  changeLogMax: number;
  /** Wakes watchers when a task's timeline grows, on any replica. */
  signals: TimelineSignals;
  now?: () => Date;
}

export type NewTaskEvent = Omit<MessageInitShape<typeof TaskEventSchema>, "id" | "$typeName"> & {
  /**
   * The event records a change to the task's record (its creation, a state change, a result,
   * an attempt): its entry in the change log carries the task as stored when it is appended.
   */
  changedTask?: boolean;
};

/**
 * How long a watcher waits without a signal before it looks whether the task ended: a process
 * that stopped between ending a task and appending its last event never signals.
 */
const RECHECK_MS = 30_000;
const READ_BATCH = 500;

/**
 * Appends events to a task's stream and to the change log, and signals the task's watchers and
 * the change log's, in one step: an event is never in a timeline without its change. The stream
 * lives as long as its task: it takes the task key's remaining time (TaskStore sets it when the
 * task ends), and nothing is appended for a task that does not exist (any more), so no stream
 * outlives one.
 *
 * Each change holds the task id (t), the event's id in the timeline (i), the event (e), the
 * change before it (p: what the log last gave out, even if trimmed since, so a reader can tell
 * a gap from a neighbour) and, for an event that changed the task, the task as stored now (s),
 * which is at or after the change: the engine appends after it updates (or in the update's own
 * script), and reading the record here rather than sending it keeps the snapshots in the log's
 * order even when two replicas update one task at once.
 *
 * `append(keys, argv)` (Lua, to run inside a script, the task store's updates among them):
 * keys: stream, task, change log (also its channel).
 * argv: stream length cap, channel, change log cap, task id, then per event "1" when it changed
 * the task ("" otherwise) and the event.
 */
export const APPEND_LUA = `
local function append(keys, argv)
  local ttl = redis.call('PTTL', keys[2])
  if ttl == -2 then return 0 end
  local previous = ''
  local newest = redis.call('XREVRANGE', keys[3], '+', '-', 'COUNT', 1)[1]
  if newest then
    previous = newest[1]
  elseif redis.call('EXISTS', keys[3]) == 1 then
    local info = redis.call('XINFO', 'STREAM', keys[3])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then previous = info[i + 1] end
    end
  end
  local record
  for i = 5, #argv, 2 do
    local id = redis.call('XADD', keys[1], 'MAXLEN', '~', argv[1], '*', 'e', argv[i + 1])
    if argv[i] == '1' then
      record = record or redis.call('GET', keys[2])
      previous = redis.call('XADD', keys[3], 'MAXLEN', '~', argv[3], '*',
        't', argv[4], 'i', id, 'p', previous, 'e', argv[i + 1], 's', record)
    else
      previous = redis.call('XADD', keys[3], 'MAXLEN', '~', argv[3], '*',
        't', argv[4], 'i', id, 'p', previous, 'e', argv[i + 1])
    end
  end
  if ttl > 0 then redis.call('PEXPIRE', keys[1], ttl) end
  redis.call('PUBLISH', argv[2], '')
  redis.call('PUBLISH', keys[3], '')
  return 1
end
`;

const APPEND_SCRIPT = `${APPEND_LUA}
return append(KEYS, ARGV)
`;

/** An append made ready for APPEND_LUA: its keys and arguments, in that order. */
export interface PreparedAppend {
  keys: string[];
  args: (string | Buffer)[];
}

/**
 * A task's append-only timeline: one Redis stream per task, each entry a TaskEvent in
 * protobuf binary, the stream entry id being the event id. Stream ids grow, so "after this
 * id" is exactly what a resuming watcher needs.
 */
export class Timeline {
  private readonly now: () => Date;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: TimelineOptions,
  ) {
    this.now = options.now ?? (() => new Date());
  }

  /** Appends `events` to the task's timeline and to the change log, unless the task is gone. */
  async append(taskId: string, events: readonly NewTaskEvent[]): Promise<void> {
    const prepared = this.prepare(taskId, events);
    if (!prepared) return;
    await storeCall(() => runScript(this.redis, APPEND_SCRIPT, prepared.keys, prepared.args));
  }

  /**
   * `events` encoded for APPEND_LUA, to be appended by a script that does more (nothing when
   * there are none): the task store's updates append the events that tell of them this way.
   */
  prepare(taskId: string, events: readonly NewTaskEvent[]): PreparedAppend | undefined {
    if (events.length === 0) return undefined;
    const encoded = events.flatMap(({ changedTask, ...init }) => {
      const event = create(TaskEventSchema, { ...init, time: init.time ?? timestampFromDate(this.now()) });
      this.truncate(event);
      return [changedTask ? "1" : "", Buffer.from(toBinary(TaskEventSchema, event))];
    });
    const key = this.key(taskId);
    const { keyPrefix, maxEvents, changeLogMax } = this.options;
    return {
      keys: [key, taskKey(keyPrefix, taskId), changeLogKey(keyPrefix)],
      args: [String(maxEvents), key, String(changeLogMax), taskId, ...encoded],
    };
  }

  /** Events after `afterId` (from the start when empty), oldest first. */
  async read(taskId: string, afterId = ""): Promise<TaskEvent[]> {
    const entries = await storeCall(() =>
      this.redis.xrangeBuffer(this.key(taskId), afterId ? `(${afterId}` : "-", "+", "COUNT", READ_BATCH),
    );
    return entries.map(([id, fields]) => decode(id, fields));
  }

  /**
   * Every event after `afterId`, then each new one, until `ended()` says the task is over and
   * nothing is left to read, or `signal` aborts. Between reads it waits for the task's signal,
   * which one shared subscription per process delivers, so a watcher holds no connection.
   */
  async *watch(
    taskId: string,
    afterId: string,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ): AsyncGenerator<TaskEvent> {
    const doorbell = new Doorbell();
    const unlisten = await this.options.signals.listen(taskId, () => doorbell.ring());
    try {
      let last = afterId;
      for (;;) {
        // Cleared before reading, so a signal that arrives during the read is not lost.
        doorbell.clear();
        const batch = await this.read(taskId, last);
        for (const event of batch) {
          last = event.id;
          yield event;
        }
        if (batch.length === READ_BATCH) continue;
        if (signal.aborted) return;
        if (await ended()) {
          // The final event may have landed between the read and the check.
          for (const event of await this.read(taskId, last)) yield event;
          return;
        }
        await doorbell.wait(RECHECK_MS, signal);
      }
    } finally {
      unlisten();
    }
  }

  private truncate(event: TaskEvent): void {
    const { maxTextBytes } = this.options;
    if (event.kind.case === "output" && Buffer.byteLength(event.kind.value.text) > maxTextBytes) {
      event.kind.value.text = cut(event.kind.value.text, maxTextBytes);
      event.kind.value.truncated = true;
    }
    if (event.kind.case === "toolCall" && Buffer.byteLength(event.kind.value.detail) > maxTextBytes) {
      event.kind.value.detail = cut(event.kind.value.detail, maxTextBytes);
    }
  }

  private key(taskId: string): string {
    return timelineKey(this.options.keyPrefix, taskId);
  }
}

function decode(id: Buffer, fields: Buffer[]): TaskEvent {
  const event = fromBinary(TaskEventSchema, fields[1]!);
  event.id = id.toString();
  return event;
}

/** The longest prefix of `text` within `maxBytes` of UTF-8 that does not split a character. */
function cut(text: string, maxBytes: number): string {
  return Buffer.from(text)
    .subarray(0, maxBytes)
    .toString()
    .replace(/\uFFFD$/, "");
}
