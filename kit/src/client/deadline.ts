import type { CallOptions, HandlerContext } from "@connectrpc/connect";

/**
 * Call options that carry a handler's cancellation and remaining deadline to the calls it
 * makes downstream, so work stops everywhere once the original caller gives up:
 *
 * ```ts
 * const task = await tasks.getTask({ id }, callOptionsFrom(ctx));
 * ```
 */
export function callOptionsFrom(ctx: HandlerContext): CallOptions {
  const remaining = ctx.timeoutMs();
  return {
    signal: ctx.signal,
    // Connect reads a timeout of zero or less as "no deadline", so a deadline that has
    // just passed is sent as 1ms instead of being lifted.
    timeoutMs: remaining === undefined ? undefined : Math.max(1, remaining),
  };
}

const timeoutHeader = "grpc-timeout";

const timeoutUnitMs: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * The absolute deadline (epoch ms) of a call, read from the gRPC timeout header that the
 * transport sets from the caller's `timeoutMs`. Interceptors see the deadline only there.
 */
export function deadlineFromHeader(header: Headers, now = Date.now()): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(header.get(timeoutHeader) ?? "");
  if (!match) return undefined;
  return now + Number(match[1]) * timeoutUnitMs[match[2]];
}

/** A copy of the headers that tells the server how much of the deadline is left. */
export function headerWithTimeout(header: Headers, timeoutMs: number): Headers {
  const copy = new Headers(header);
  copy.set(timeoutHeader, `${Math.max(1, Math.ceil(timeoutMs))}m`);
  return copy;
}
