/** A custom webhook that does not exist. */
export class CustomRouteNotFoundError extends Error {
  override name = "CustomRouteNotFoundError";
  constructor(readonly routeName: string) {
    super(`custom route ${routeName} not found`);
  }
}

/** The route changed under an upsert so often that it gave up (RPC: ABORTED; retry). */
export class CustomRouteConflictError extends Error {
  override name = "CustomRouteConflictError";
  constructor(readonly routeName: string) {
    super(`custom route ${routeName} was changed concurrently; retry`);
  }
}
