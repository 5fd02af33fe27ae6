import { FieldError, storeCaller } from "@hookmesh/kit";

/** The submitted event lacks something the task needs; `field` names it. */
export class InvalidEventError extends FieldError {
  override name = "InvalidEventError";
}

export class TaskNotFoundError extends Error {
  override name = "TaskNotFoundError";
  constructor(readonly id: string) {
    super(`task ${id} not found`);
  }
}

/** A WatchChanges cursor that no change log gives out. */
export class InvalidCursorError extends FieldError {
  override name = "InvalidCursorError";
}

/** A page token that this server did not issue for these filters. */
export class InvalidPageTokenError extends Error {
  override name = "InvalidPageTokenError";
  constructor() {
    super("page_token is invalid or was issued for other filters");
  }
}

/** The caller's lease on a task is gone: it expired and the task went elsewhere, or the task ended. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
  constructor(readonly taskId: string) {
    super(`lease on task ${taskId} is no longer held`);
  }
}

/** The task is not in a state that allows the operation. */
export class TaskStateError extends Error {
  override name = "TaskStateError";
}

/** The name the task store's outages carry (kit's StoreUnavailableError). */
export const TASK_STORE = "task store";

/** Runs the task store's Redis calls: outages become StoreUnavailableError, reply errors are scrubbed. */
export const storeCall = storeCaller(TASK_STORE);

/** A caller, or the whole server, has as many streams of a method open as it may. */
export class TooManyWatchesError extends Error {
  override name = "TooManyWatchesError";
}
