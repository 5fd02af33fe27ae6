import { ReplyError } from "ioredis";

/** The submitted event lacks something the task needs; `field` names it. */
export class InvalidEventError extends Error {
  override name = "InvalidEventError";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export class TaskNotFoundError extends Error {
  override name = "TaskNotFoundError";
  constructor(readonly id: string) {
    super(`task ${id} not found`);
  }
}

/** A page token that this server did not issue for these filters. */
export class InvalidPageTokenError extends Error {
  override name = "InvalidPageTokenError";
  constructor() {
    super("page_token is invalid or was issued for other filters");
  }
}

/** The store could not be reached; the operation may be retried. */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
  constructor(cause: unknown) {
    super("task store unavailable", { cause });
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

/**
 * Runs a Redis call, turning connection failures into StoreUnavailableError. A reply error
 * is Redis refusing a command, a bug rather than an outage, so it stays as it is.
 */
export async function storeCall<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (err) {
    if (err instanceof ReplyError) throw err;
    throw new StoreUnavailableError(err);
  }
}
