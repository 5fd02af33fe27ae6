import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { IssueStatus } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { sentryStatus, toComment, toIssue } from "../src/resources.js";
import { sentryErrorCode, sentryRateLimit } from "../src/upstream.js";
import { sentryIssue } from "./fake-sentry.js";

describe("Sentry issue JSON", () => {
  it.each([
    ["resolved", IssueStatus.RESOLVED],
    ["resolvedInNextRelease", IssueStatus.RESOLVED],
    ["unresolved", IssueStatus.UNRESOLVED],
    ["ignored", IssueStatus.IGNORED],
    ["reprocessing", IssueStatus.UNSPECIFIED],
    [undefined, IssueStatus.UNSPECIFIED],
  ])("maps status %s", (status, expected) => {
    expect(toIssue(sentryIssue("1", { status })).status).toBe(expected);
  });

  it.each([
    [null, ""],
    [{ type: "user", id: "88", name: "Jane Developer", email: "jane@example.com" }, "jane@example.com"],
    [{ type: "user", id: "88", name: "jane" }, "jane"],
    [{ type: "team", id: "5", name: "backend" }, "team:5"],
  ])("maps assignedTo %j to %s", (assignedTo, expected) => {
    expect(toIssue(sentryIssue("1", { assignedTo })).assignee).toBe(expected);
  });

  it("reads the count Sentry sends as a string, as a 64-bit integer", () => {
    expect(toIssue(sentryIssue("1", { count: "12345678901234567" })).count).toBe(12345678901234567n);
    expect(toIssue(sentryIssue("1", { count: 7 })).count).toBe(7n);
    expect(toIssue(sentryIssue("1", { count: "n/a" })).count).toBe(0n);
  });

  it("tolerates missing optional fields", () => {
    expect(toIssue({ id: "1" })).toMatchObject({
      id: "1",
      shortId: "",
      title: "",
      projectSlug: "",
      assignee: "",
      count: 0n,
    });
  });

  it("refuses an answer without an id", () => {
    expect(() => toIssue("<html>")).toThrow(expect.objectContaining({ code: Code.Unknown }));
    expect(() => toComment({ data: { text: "x" } })).toThrow(/without a comment/);
  });

  it("reads a note's text from its activity data", () => {
    expect(toComment({ id: "1000", type: "note", data: { text: "hi" }, user: null })).toMatchObject({
      id: "1000",
      text: "hi",
    });
  });

  it("names statuses as Sentry takes them", () => {
    expect(
      [IssueStatus.RESOLVED, IssueStatus.UNRESOLVED, IssueStatus.IGNORED, IssueStatus.UNSPECIFIED].map(sentryStatus),
    ).toEqual(["resolved", "unresolved", "ignored", undefined]);
  });
});

describe("Sentry's rate limits", () => {
  const headers = (h: Record<string, string>) => new Headers(h);

  it("is only about 429 answers", () => {
    expect(
      sentryRateLimit(
        200,
        headers({ "x-sentry-rate-limit-remaining": "0", "x-sentry-rate-limit-reset": "9999999999" }),
        {},
      ),
    ).toBeUndefined();
    expect(sentryRateLimit(503, headers({ "retry-after": "5" }), {})).toBeUndefined();
  });

  it("honours Retry-After first", () => {
    expect(
      sentryRateLimit(
        429,
        headers({
          "retry-after": "3",
          "x-sentry-rate-limit-remaining": "0",
          "x-sentry-rate-limit-reset": "9999999999",
        }),
        {},
      ),
    ).toBe(3_000);
  });

  it("waits for the window's reset (epoch seconds) when it is used up", () => {
    const reset = Math.floor(Date.now() / 1000) + 20;
    const wait = sentryRateLimit(
      429,
      headers({ "x-sentry-rate-limit-remaining": "0", "x-sentry-rate-limit-reset": String(reset) }),
      {},
    )!;
    expect(wait).toBeGreaterThan(18_000);
    expect(wait).toBeLessThanOrEqual(20_000);
  });

  it("pauses briefly for the concurrent-request limit (requests left in the window)", () => {
    expect(
      sentryRateLimit(
        429,
        headers({
          "x-sentry-rate-limit-remaining": "12",
          "x-sentry-rate-limit-reset": "9999999999",
          "x-sentry-rate-limit-concurrentremaining": "0",
        }),
        {},
      ),
    ).toBe(1_000);
    expect(sentryRateLimit(429, headers({}), {})).toBe(1_000);
  });
});

describe("Sentry's error answers", () => {
  it("maps the duplicate-note 400 to AlreadyExists and leaves the rest to HTTP semantics", () => {
    expect(sentryErrorCode(400, { detail: "You have already posted that comment." })).toBe(Code.AlreadyExists);
    expect(sentryErrorCode(400, { text: ["This field is required."] })).toBeUndefined();
    expect(sentryErrorCode(404, { detail: "The requested resource does not exist" })).toBeUndefined();
  });
});
