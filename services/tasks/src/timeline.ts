import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Redis } from "ioredis";
import { type TaskEvent, TaskEventSchema } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { storeCall } from "./errors.js";
import { taskKey, timelineKey } from "./task-store.js";
import type { TimelineSignals } from "./watches.js";

export interface TimelineOptions {
  keyPrefix: string;
  /** Longest text kept in one output or tool-call event; longer text is cut and marked. */
  maxTextBytes: number;
  /** Events kept per task; the oldest go first. */
  maxEvents: number;
  /** Wakes watchers when a task's timeline grows, on any replica. */
  signals: TimelineSignals;
  now?: () => Date;
}

export type NewTaskEvent = Omit<MessageInitShape<typeof TaskEventSchema>, "id" | "$typeName">;

/**
 * How long a watcher waits without a signal before it looks whether the task ended: a process
 * that stopped between ending a task and appending its last event never signals.
 */
const RECHECK_MS = 30_000;
const READ_BATCH = 500;

/**
 * Appends events to a task's stream and signals its watchers, in one step. The stream lives as
 * long as its task: it takes the task key's remaining time (TaskStore sets it when the task ends),
 * and nothing is appended for a task that does not exist (any more), so no stream outlives one.
 * KEYS: stream, task. ARGV: stream length cap, channel, then the events.
 */
const APPEND_SCRIPT = `
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -2 then return 0 end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i]) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('PUBLISH', ARGV[2], '')
return 1
`;

/**
 * A task's append-only timeline: one Redis stream per task, each entry a TaskEvent in
 * protobuf binary, the stream entry id being the event id. Stream ids grow, so "after this
 * id" is exactly what a resuming watcher needs.
 */
export class Timeline {
  private readonly now: () => Date;

  constructor(
    private readonly redis: Redis,
    private readonly options: TimelineOptions,
  ) {
    this.now = options.now ?? (() => new Date());
  }

  async append(taskId: string, events: readonly NewTaskEvent[]): Promise<void> {
    if (events.length === 0) return;
    const encoded = events.map((init) => {
      const event = create(TaskEventSchema, { ...init, time: init.time ?? timestampFromDate(this.now()) });
      this.truncate(event);
      return Buffer.from(toBinary(TaskEventSchema, event));
    });
    const key = this.key(taskId);
    await storeCall(() =>
      this.redis.eval(
        APPEND_SCRIPT,
        2,
        key,
        taskKey(this.options.keyPrefix, taskId),
        String(this.options.maxEvents),
        key,
        ...encoded,
      ),
    );
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

/** A wake-up that is remembered until cleared, so a ring between a read and the wait counts. */
class Doorbell {
  private rung = false;
  private answer: (() => void) | undefined;

  ring(): void {
    this.rung = true;
    this.answer?.();
  }

  clear(): void {
    this.rung = false;
  }

  /** Resolves when rung (at once if it was since the last clear), after `ms`, or on abort. */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.rung || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.answer = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.answer = done;
    });
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
