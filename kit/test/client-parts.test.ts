import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { failedBeforeSending, isOutage, isRetryableCode } from "../src/client/codes.js";
import { callOptionsFrom, deadlineFromHeader, headerWithTimeout } from "../src/client/deadline.js";
import { createRetryBudget } from "../src/client/retry-budget.js";

function nodeError(message: string, props: { code: string; syscall: string }): Error {
  return Object.assign(new Error(message), props);
}

describe("codes", () => {
  it("tell outages from caller errors", () => {
    expect(isOutage(new ConnectError("", Code.Unavailable))).toBe(true);
    expect(isOutage(new ConnectError("", Code.DataLoss))).toBe(true);
    expect(isOutage(new ConnectError("", Code.NotFound))).toBe(false);
    expect(isOutage(new ConnectError("", Code.Canceled))).toBe(false);
    expect(isRetryableCode(new ConnectError("", Code.ResourceExhausted))).toBe(true);
    expect(isRetryableCode(new ConnectError("", Code.DeadlineExceeded))).toBe(false);
  });

  it("see from the cause chain whether a request was sent", () => {
    const wrap = (cause: Error) => new ConnectError("failed", Code.Unavailable, undefined, undefined, cause);
    const refused = nodeError("connect ECONNREFUSED", { code: "ECONNREFUSED", syscall: "connect" });
    const unresolvable = nodeError("getaddrinfo ENOTFOUND", { code: "ENOTFOUND", syscall: "getaddrinfo" });
    const reset = nodeError("read ECONNRESET", { code: "ECONNRESET", syscall: "read" });

    expect(failedBeforeSending(wrap(refused))).toBe(true);
    expect(failedBeforeSending(wrap(new Error("session failed", { cause: unresolvable })))).toBe(true);
    expect(failedBeforeSending(wrap(reset))).toBe(false);
    expect(failedBeforeSending(new ConnectError("server said so", Code.Unavailable))).toBe(false);
    // A stream the server refused unprocessed, as it does to one that crossed its GOAWAY.
    const refusedStream = Object.assign(new Error("Stream closed with error code NGHTTP2_REFUSED_STREAM"), {
      code: "ERR_HTTP2_STREAM_ERROR",
    });
    const cancelledStream = Object.assign(new Error("Stream closed with error code NGHTTP2_CANCEL"), {
      code: "ERR_HTTP2_STREAM_ERROR",
    });
    expect(failedBeforeSending(wrap(refusedStream))).toBe(true);
    expect(failedBeforeSending(wrap(cancelledStream))).toBe(false);

    const cyclic = new Error("cyclic");
    cyclic.cause = cyclic;
    expect(failedBeforeSending(wrap(cyclic))).toBe(false);
  });
});

describe("retry budget", () => {
  it("allows retries while more than half of the tokens remain", () => {
    const budget = createRetryBudget();
    for (let i = 0; i < 4; i++) budget.recordFailure();
    expect(budget.allowsRetry()).toBe(true); // 6 of 10
    budget.recordFailure();
    expect(budget.allowsRetry()).toBe(false); // 5 of 10
    budget.recordFailure();
    for (let i = 0; i < 10; i++) budget.recordSuccess();
    expect(budget.allowsRetry()).toBe(false); // exactly 5 again: ten times 0.1 is 1, no drift
    budget.recordSuccess();
    expect(budget.allowsRetry()).toBe(true); // 5.1
  });

  it("never holds more than maxTokens nor fewer than none", () => {
    const budget = createRetryBudget({ maxTokens: 4, tokenRatio: 1 });
    for (let i = 0; i < 10; i++) budget.recordSuccess();
    budget.recordFailure();
    budget.recordFailure();
    expect(budget.allowsRetry()).toBe(false); // 2 of 4, not 12
    for (let i = 0; i < 10; i++) budget.recordFailure();
    for (let i = 0; i < 3; i++) budget.recordSuccess();
    expect(budget.allowsRetry()).toBe(true); // 3 of 4, not -7
  });
});

describe("deadlines", () => {
  it("read the gRPC timeout header in any unit", () => {
    const at = (value: string) => deadlineFromHeader(new Headers({ "grpc-timeout": value }), 1000);
    expect(at("250m")).toBe(1250);
    expect(at("2S")).toBe(3000);
    expect(at("1M")).toBe(61_000);
    expect(at("1H")).toBe(3_601_000);
    expect(at("5000u")).toBe(1005);
    expect(at("bogus")).toBeUndefined();
    expect(deadlineFromHeader(new Headers())).toBeUndefined();
  });

  it("write the time that is left, at least a millisecond, without touching the original", () => {
    const original = new Headers({ "grpc-timeout": "1000m", "x-other": "kept" });
    const copy = headerWithTimeout(original, 412.3);
    expect(copy.get("grpc-timeout")).toBe("413m");
    expect(copy.get("x-other")).toBe("kept");
    expect(original.get("grpc-timeout")).toBe("1000m");
    expect(headerWithTimeout(original, -20).get("grpc-timeout")).toBe("1m");
  });

  it("callOptionsFrom keeps a passed deadline a deadline", () => {
    const context = (timeoutMs?: number) =>
      createHandlerContext({
        service: TaskService,
        method: TaskService.method.getTask,
        protocolName: "grpc",
        requestMethod: "POST",
        url: "http://localhost/hookmesh.tasks.v1.TaskService/GetTask",
        timeoutMs,
      });
    const expired = context(-5);
    expect(callOptionsFrom(expired)).toEqual({ signal: expired.signal, timeoutMs: 1 });
    expect(callOptionsFrom(context()).timeoutMs).toBeUndefined();
    expect(callOptionsFrom(context(5000)).timeoutMs).toBeGreaterThan(4000);
  });
});
