import { rm } from "node:fs/promises";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AgentProfile } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { OutputStream } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { ClaudeRunner } from "../src/runners/claude.js";
import { unsandboxed } from "../src/sandbox/sandbox.js";
import { eventLog, fixture, profile, scratchDir, settings } from "./helpers.js";

describe("claude runner", () => {
  let workdir: string;
  const testLogger = memoryLogger("runner-test").logger;
  beforeEach(async () => {
    workdir = await scratchDir("claude");
  });
  afterEach(() => rm(workdir, { recursive: true, force: true }));

  async function start(scenario: string, runProfile: AgentProfile = profile(), claudeBin = fixture("fake-claude.mjs")) {
    const log = eventLog();
    const handle = await new ClaudeRunner(settings({ claudeBin })).start({
      prompt: "why does the test fail?",
      profile: runProfile,
      workdir,
      env: { PATH: process.env.PATH!, FAKE_CLAUDE_SCENARIO: scenario },
      logger: testLogger,
      onEvent: log.onEvent,
    });
    return { handle, log };
  }

  it("runs claude in print mode with stream-json, the prompt on stdin", async () => {
    const { handle, log } = await start("success", profile({ model: "opus", maxCostUsd: 1.5 }));
    await handle.done;
    expect(log.text(OutputStream.STDERR)).toEqual([
      "args: -p --output-format stream-json --verbose --permission-mode acceptEdits --model opus --max-budget-usd 1.5",
      "prompt: why does the test fail?",
    ]);
  });

  it("runs with the profile's permission mode", async () => {
    const { handle, log } = await start("success", profile({ permissionMode: "plan" }));
    await handle.done;
    expect(log.text(OutputStream.STDERR)[0]).toBe(
      "args: -p --output-format stream-json --verbose --permission-mode plan",
    );
  });

  it("leaves out --model and --max-budget-usd when the profile sets neither", async () => {
    const { handle, log } = await start("success");
    await handle.done;
    expect(log.text(OutputStream.STDERR)[0]).toBe(
      "args: -p --output-format stream-json --verbose --permission-mode acceptEdits",
    );
  });

  it("turns assistant text, tool calls and tool results into task events", async () => {
    const { handle, log } = await start("success");
    await handle.done;
    expect(log.text(OutputStream.AGENT)).toEqual([
      "claude session 5b1c0e9e-2f0e-4a57-9d2a-0c7f1f3f8a11, model claude-sonnet-4-5",
      "Let me look at the failing test.",
      "The bug is an off-by-one in add().",
    ]);
    expect(log.toolCalls()).toEqual([
      { name: "Bash", detail: '{"command":"npm test","description":"Run the tests"}' },
      { name: "Bash", detail: "result: 1 failing: expected 2, got 3" },
      { name: "Read", detail: '{"file_path":"/tmp/run/missing.ts"}' },
      { name: "Read", detail: "error: File does not exist." },
    ]);
    expect(log.text(OutputStream.STDOUT)).toEqual([]);
  });

  it("takes the answer, cost and tokens from the final result event", async () => {
    const { handle, log } = await start("success");
    const exit = await handle.done;
    expect(exit).toMatchObject({ exitCode: 0, answer: "Fixed the off-by-one in add(); the test passes now." });
    expect(exit.error).toBeUndefined();
    expect(log.usage()).toHaveLength(1);
    expect(log.usage()[0]).toMatchObject({ costUsd: 0.0734, inputTokens: 12_018n, outputTokens: 62n });
  });

  it("reports a failed result as the run's error, with its usage", async () => {
    const { handle, log } = await start("error");
    const exit = await handle.done;
    expect(exit).toMatchObject({ exitCode: 1, answer: "", error: "claude ended with error_max_turns" });
    expect(log.usage()[0]).toMatchObject({ costUsd: 0.21, inputTokens: 40n, outputTokens: 300n });
  });

  it("says so when the claude binary cannot be started in its sandbox", async () => {
    const { handle, log } = await start("success", profile(), "/nonexistent/claude");
    expect(await handle.done).toMatchObject({ exitCode: 1, signal: null });
    expect(log.text(OutputStream.STDERR).join("\n")).toMatch(/execvp \/nonexistent\/claude: No such file/);
  });

  it("says so when the claude binary cannot be started unsandboxed", async () => {
    // AGENT_SANDBOX=off: here the worker's own spawn fails, which only an unsandboxed start shows.
    const log = eventLog();
    const handle = await new ClaudeRunner(settings({ claudeBin: "/nonexistent/claude", sandbox: unsandboxed() })).start(
      {
        prompt: "why?",
        profile: profile(),
        workdir,
        env: { PATH: process.env.PATH! },
        logger: testLogger,
        onEvent: log.onEvent,
      },
    );
    expect(handle.pid).toBeUndefined();
    const exit = await handle.done;
    expect(exit).toMatchObject({ exitCode: null, signal: null });
    expect(exit.error).toMatch(/^cannot start \/nonexistent\/claude: .*ENOENT/);
  });
});
