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
