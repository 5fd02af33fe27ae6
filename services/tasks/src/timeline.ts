import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { StoreUnavailableError } from "@hookmesh/kit";
import type { Redis } from "ioredis";
import { type TaskEvent, TaskEventSchema } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { storeCall, TASK_STORE } from "./errors.js";

export interface TimelineOptions {
  keyPrefix: string;
  /** Longest text kept in one output or tool-call event; longer text is cut and marked. */
  maxTextBytes: number;
  /** Events kept per task; the oldest go first. */
  maxEvents: number;
  now?: () => Date;
}

export type NewTaskEvent = Omit<MessageInitShape<typeof TaskEventSchema>, "id" | "$typeName">;

/** How long one blocking read waits before the watcher checks whether the task has ended. */
const BLOCK_MS = 2_000;
const READ_BATCH = 500;

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
    const pipeline = this.redis.pipeline();
    for (const init of events) {
      const event = create(TaskEventSchema, { ...init, time: init.time ?? timestampFromDate(this.now()) });
      this.truncate(event);
      pipeline.xadd(
        this.key(taskId),
        "MAXLEN",
        "~",
        String(this.options.maxEvents),
        "*",
        "e",
        Buffer.from(toBinary(TaskEventSchema, event)),
      );
    }
    const results = await pipeline.exec().catch((err: unknown) => {
      throw new StoreUnavailableError(TASK_STORE, err);
    });
    const failed = results?.find(([err]) => err !== null);
    if (failed) throw new StoreUnavailableError(TASK_STORE, failed[0]);
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
   * nothing is left to read, or `signal` aborts. Blocking reads use a connection of their own,
   * so a watcher never holds up the shared one.
   */
  async *watch(
    taskId: string,
    afterId: string,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ): AsyncGenerator<TaskEvent> {
    let last = afterId;
    const blocking = this.redis.duplicate({ lazyConnect: true });
    const stop = () => blocking.disconnect();
    signal.addEventListener("abort", stop, { once: true });
    try {
      await storeCall(() => blocking.connect());
      for (;;) {
        const batch = await this.read(taskId, last);
        for (const event of batch) {
          last = event.id;
          yield event;
        }
        if (batch.length === READ_BATCH) continue;
        if (signal.aborted || (await ended())) {
          // The final event may have landed between the read and the check.
          for (const event of await this.read(taskId, last)) yield event;
          return;
        }
        await blocking.xread("BLOCK", BLOCK_MS, "STREAMS", this.key(taskId), last || "0-0").catch((err: unknown) => {
          if (!signal.aborted) throw new StoreUnavailableError(TASK_STORE, err);
        });
        if (signal.aborted) return;
      }
    } finally {
      signal.removeEventListener("abort", stop);
      blocking.disconnect();
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
    return `${this.options.keyPrefix}events:${taskId}`;
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
