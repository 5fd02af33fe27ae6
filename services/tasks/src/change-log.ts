import { create, fromBinary } from "@bufbuild/protobuf";
import type { RedisClient } from "@hookmesh/kit";
import { TaskEventSchema, TaskSchema } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type TaskChange, TaskChangeSchema } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { InvalidCursorError, storeCall } from "./errors.js";
import { changeLogKey } from "./keys.js";
import { Doorbell, type TimelineSignals } from "./watches.js";

export interface ChangeLogOptions {
  keyPrefix: string;
  /** Wakes change streams when the log grows, on any replica. */
  signals: TimelineSignals;
}

/**
 * How long a stream waits without a signal before it reads anyway: a wake-up published while
 * the subscriber was reconnecting is made up for by the resubscription, this is the backstop.
 */
const RECHECK_MS = 30_000;
const READ_BATCH = 500;
const MAX_ID_PART = 2n ** 64n - 1n;

/**
 * Every task's changes in one capped Redis stream, oldest first, written by Timeline.append
 * together with the timeline events they carry (see its script for an entry's fields). A
 * change's cursor is its stream entry id, so "after this cursor" is one XRANGE.
 */
export class ChangeLog {
  private readonly key: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: ChangeLogOptions,
  ) {
    this.key = changeLogKey(options.keyPrefix);
  }

  /**
   * Up to `count` changes after `afterCursor` (from the oldest kept when empty). A change is
   * `missed` when the log gave out a change between the cursor and it that it no longer holds.
   */
  async read(afterCursor: string, count = READ_BATCH): Promise<TaskChange[]> {
    const entries = await storeCall(() =>
      this.redis.xrangeBuffer(this.key, afterCursor ? `(${afterCursor}` : "-", "+", "COUNT", count),
    );
    let last = afterCursor;
    return entries.map(([id, fields]) => {
      const change = decodeChange(id.toString(), fields, last);
      last = change.cursor;
      return change;
    });
  }

  /**
   * Every change after `afterCursor`, then each new one, until `signal` aborts. Between reads
   * it waits for the log's signal, which the process's one shared subscription delivers.
   */
  async *watch(afterCursor: string, signal: AbortSignal): AsyncGenerator<TaskChange> {
    const doorbell = new Doorbell();
    const unlisten = await this.options.signals.listenTo(this.key, () => doorbell.ring());
    try {
      let last = afterCursor;
      for (;;) {
        // Cleared before reading, so a signal that arrives during the read is not lost.
        doorbell.clear();
        const batch = await this.read(last);
        for (const change of batch) {
          last = change.cursor;
          yield change;
          if (signal.aborted) return;
        }
        if (signal.aborted) return;
        if (batch.length === READ_BATCH) continue;
        await doorbell.wait(RECHECK_MS, signal);
      }
    } finally {
      unlisten();
    }
  }

  /**
   * Drops the changes older than `retentionMs` (the length cap is kept by every append; this
   * is for a log that stopped growing). Says how many went.
   */
  async trim(retentionMs: number, now = Date.now()): Promise<number> {
    return storeCall(() => this.redis.xtrim(this.key, "MINID", String(Math.max(0, now - retentionMs))));
  }
}

/** `cursor` if it is a change's cursor (a stream entry id, `<ms>-<seq>`) or empty; else InvalidCursorError. */
export function parseCursor(cursor: string): string {
  if (cursor === "") return cursor;
  const parts = /^(\d{1,20})-(\d{1,20})$/.exec(cursor);
  if (parts === null || BigInt(parts[1]!) > MAX_ID_PART || BigInt(parts[2]!) > MAX_ID_PART) {
    throw new InvalidCursorError("after_cursor", "is not a cursor this service gave out");
  }
  return cursor;
}

/** A change from its stream entry; `after` is the cursor the reader had before it. */
function decodeChange(cursor: string, fields: Buffer[], after: string): TaskChange {
  const values = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i]!.toString(), fields[i + 1]!);
  const event = fromBinary(TaskEventSchema, values.get("e")!);
  event.id = values.get("i")!.toString();
  const snapshot = values.get("s");
  return create(TaskChangeSchema, {
    cursor,
    taskId: values.get("t")!.toString(),
    event,
    ...(snapshot && { task: fromBinary(TaskSchema, snapshot) }),
    missed: isGap(values.get("p")!.toString(), after),
  });
}

/**
 * Whether changes were lost between `after` and a change whose predecessor was `previous`:
 * the predecessor is newer than the reader's cursor (it, at least, was trimmed), or the log
 * starts over (no predecessor) under a reader that had a cursor, because the log was lost.
 */
function isGap(previous: string, after: string): boolean {
  if (previous === "") return after !== "";
  return after === "" || compareIds(previous, after) > 0;
}

function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split("-").map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}
