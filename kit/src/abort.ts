/** The longest delay a Node timer takes; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A signal that aborts when `signal` does, or after `ms` with a TimeoutError; `clear` releases
 * its timer. Not AbortSignal.any over AbortSignal.timeout: the composite holds its sources
 * weakly, and Node drops a timeout signal's timer once the signal is collected, so the
 * composite could never abort.
 */
export function abortAfter(signal: AbortSignal | undefined, ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException("The operation timed out.", "TimeoutError")),
    Math.min(Math.max(0, ms), MAX_TIMER_MS),
  );
  timer.unref();
  const onAbort = () => controller.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    },
  };
}
