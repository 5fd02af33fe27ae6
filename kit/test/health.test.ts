import { describe, expect, it } from "vitest";
import { HealthState, ServingStatus } from "../src/health.js";

/** Takes the next value of an async iterator, failing if none comes within `ms`. */
async function next<T>(iterator: AsyncIterator<T>, ms = 1_000): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no value within ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([iterator.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("HealthState", () => {
  it("starts NOT_SERVING for the server and each service, unless told otherwise", () => {
    const health = new HealthState(["a.A", "b.B"]);
    expect([...health.all()]).toEqual([
      ["", ServingStatus.NOT_SERVING],
      ["a.A", ServingStatus.NOT_SERVING],
      ["b.B", ServingStatus.NOT_SERVING],
    ]);
    expect(new HealthState(["a.A"], ServingStatus.SERVING).get("a.A")).toBe(ServingStatus.SERVING);
  });

  it("sets and gets one service, and knows no others", () => {
    const health = new HealthState(["a.A"]);
    health.set("a.A", ServingStatus.SERVING);
    expect(health.get("a.A")).toBe(ServingStatus.SERVING);
    expect(health.get("")).toBe(ServingStatus.NOT_SERVING);
    expect(health.get("nope")).toBeUndefined();
    expect(() => health.set("nope", ServingStatus.SERVING)).toThrow('unknown health service "nope"');
  });

  it("sets all at once", () => {
    const health = new HealthState(["a.A", "b.B"]);
    health.setAll(ServingStatus.SERVING);
    expect([...health.all().values()]).toEqual([ServingStatus.SERVING, ServingStatus.SERVING, ServingStatus.SERVING]);
  });

  it("stays NOT_SERVING after shutdown, whatever is set afterwards", () => {
    const health = new HealthState(["a.A"], ServingStatus.SERVING);
    health.shutdown();
    expect(health.get("")).toBe(ServingStatus.NOT_SERVING);
    health.set("a.A", ServingStatus.SERVING);
    health.setAll(ServingStatus.SERVING);
    expect(health.get("a.A")).toBe(ServingStatus.NOT_SERVING);
    expect(health.get("")).toBe(ServingStatus.NOT_SERVING);
  });

  it("watch yields the current status, then each change of that service only", async () => {
    const health = new HealthState(["a.A", "b.B"]);
    const abort = new AbortController();
    const watch = health.watch("a.A", abort.signal);
    expect(await next(watch)).toEqual({ done: false, value: ServingStatus.NOT_SERVING });
    health.set("b.B", ServingStatus.SERVING); // another service: not reported
    health.set("a.A", ServingStatus.NOT_SERVING); // no change: not reported
    health.set("a.A", ServingStatus.SERVING);
    expect(await next(watch)).toEqual({ done: false, value: ServingStatus.SERVING });
    health.shutdown();
    expect(await next(watch)).toEqual({ done: false, value: ServingStatus.NOT_SERVING });
    abort.abort();
    expect(await next(watch)).toEqual({ done: true, value: undefined });
  });

  it("watch ends by itself at shutdown, after the NOT_SERVING", async () => {
    const health = new HealthState(["a.A"], ServingStatus.SERVING);
    const watch = health.watch("a.A", new AbortController().signal);
    expect(await next(watch)).toEqual({ done: false, value: ServingStatus.SERVING });
    health.shutdown();
    expect(await next(watch)).toEqual({ done: false, value: ServingStatus.NOT_SERVING });
    expect(await next(watch)).toEqual({ done: true, value: undefined });
    const late = health.watch("a.A", new AbortController().signal);
    expect(await next(late)).toEqual({ done: false, value: ServingStatus.NOT_SERVING });
    expect(await next(late)).toEqual({ done: true, value: undefined });
  });

  it("watch ends when aborted while waiting", async () => {
    const health = new HealthState(["a.A"]);
    const abort = new AbortController();
    const watch = health.watch("a.A", abort.signal);
    await next(watch);
    const pending = next(watch);
    abort.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
  });

  it("watch of an unknown service says SERVICE_UNKNOWN", async () => {
    const health = new HealthState([]);
    const abort = new AbortController();
    const watch = health.watch("nope", abort.signal);
    expect((await next(watch)).value).toBe(ServingStatus.SERVICE_UNKNOWN);
    abort.abort();
    expect((await next(watch)).done).toBe(true);
  });

  it("does not miss a change made between two reads", async () => {
    const health = new HealthState(["a.A"]);
    const abort = new AbortController();
    const watch = health.watch("a.A", abort.signal);
    await next(watch);
    // Changes made while nobody awaits the iterator are buffered, not lost.
    health.set("a.A", ServingStatus.SERVING);
    health.set("a.A", ServingStatus.NOT_SERVING);
    expect((await next(watch)).value).toBe(ServingStatus.SERVING);
    expect((await next(watch)).value).toBe(ServingStatus.NOT_SERVING);
    abort.abort();
  });
});
