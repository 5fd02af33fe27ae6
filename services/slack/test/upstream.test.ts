import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { slackError, slackErrorCode, slackRateLimit } from "../src/upstream.js";

describe("Slack's error names", () => {
  it("map to the codes the contract documents", () => {
    const table = Object.fromEntries(
      [
        "channel_not_found",
        "message_not_found",
        "thread_not_found",
        "not_authed",
        "invalid_auth",
        "token_revoked",
        "account_inactive",
        "missing_scope",
        "not_in_channel",
        "cant_update_message",
        "restricted_action",
        "ratelimited",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "fatal_error",
        "service_unavailable",
        "something_new",
      ].map((name) => [name, Code[slackErrorCode(name)]]),
    );
    expect(table).toEqual({
      channel_not_found: "NotFound",
      message_not_found: "NotFound",
      thread_not_found: "NotFound",
      not_authed: "Unauthenticated",
      invalid_auth: "Unauthenticated",
      token_revoked: "Unauthenticated",
      account_inactive: "Unauthenticated",
      missing_scope: "PermissionDenied",
      not_in_channel: "PermissionDenied",
      cant_update_message: "PermissionDenied",
      restricted_action: "PermissionDenied",
      ratelimited: "ResourceExhausted",
      invalid_arguments: "InvalidArgument",
      msg_too_long: "InvalidArgument",
      no_text: "InvalidArgument",
      invalid_blocks: "InvalidArgument",
      fatal_error: "Internal",
      service_unavailable: "Unavailable",
      something_new: "Unknown",
    });
  });

  it("are not looked up on the object's prototype", () => {
    expect(slackErrorCode("constructor")).toBe(Code.Unknown);
    expect(slackErrorCode("__proto__")).toBe(Code.Unknown);
  });

  it("make an error naming the method, the error and Slack's explanation", () => {
    const err = slackError("chat.postMessage", 200, {
      ok: false,
      error: "missing_scope",
      needed: "chat:write:bot",
      provided: "x",
    });
    expect([err.code, err.status, err.message]).toEqual([
      Code.PermissionDenied,
      200,
      "slack chat.postMessage: missing_scope (needed: chat:write:bot)",
    ]);
  });
});

describe("slackRateLimit", () => {
  const headers = (init: Record<string, string> = {}) => new Headers(init);

  it("waits Retry-After seconds on 429, or a second when Slack does not say", () => {
    expect(slackRateLimit(429, headers({ "retry-after": "3" }), { ok: false, error: "ratelimited" })).toBe(3_000);
    expect(slackRateLimit(429, headers(), undefined)).toBe(1_000);
  });

  it("takes a ratelimited answer as a rate limit whatever its status", () => {
    expect(slackRateLimit(200, headers({ "retry-after": "2" }), { ok: false, error: "ratelimited" })).toBe(2_000);
  });

  it("leaves other answers alone", () => {
    expect(slackRateLimit(200, headers({ "retry-after": "2" }), { ok: true })).toBeUndefined();
    expect(
      slackRateLimit(503, headers({ "retry-after": "2" }), { ok: false, error: "service_unavailable" }),
    ).toBeUndefined();
  });
});
