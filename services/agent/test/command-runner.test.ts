import { rm } from "node:fs/promises";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OutputStream } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { CommandRunner } from "../src/runners/command.js";
import { RunnerUnavailableError, type RunSpec } from "../src/runners/runner.js";
import { eventLog, fixture, profile, scratchDir, settings } from "./helpers.js";

describe("command runner", () => {
  let workdir: string;
  const testLogger = memoryLogger("runner-test").logger;
  beforeEach(async () => {
    workdir = await scratchDir("command");
  });
  afterEach(() => rm(workdir, { recursive: true, force: true }));

  async function start(command: string, spec: Partial<RunSpec> = {}, outputChunkBytes = 4096) {
    const log = eventLog();
    const runner = new CommandRunner(settings({ agentCommand: command, outputChunkBytes }));
    const handle = await runner.start({
      prompt: "fix the bug",
      profile: profile(),
      workdir,
      env: { PATH: process.env.PATH!, HOOKMESH_PROMPT: "fix the bug", HOOKMESH_TASK_ID: "task-1" },
      logger: testLogger,
      onEvent: log.onEvent,
      ...spec,
    });
    return { handle, log };
  }

  it("streams stdout and stderr lines as output events, with the prompt on stdin and in the env", async () => {
    const { handle, log } = await start(fixture("echo-agent.sh"));
    expect(handle.pid).toBeGreaterThan(0);
    const exit = await handle.done;
    expect(exit).toMatchObject({ exitCode: 0, signal: null });
    expect(exit.error).toBeUndefined();
    expect(log.text(OutputStream.STDOUT)).toEqual(["stdin: fix the bug", "env: fix the bug", "all done"]);
    expect(log.text(OutputStream.STDERR)).toEqual(["working on task-1"]);
    expect(exit.answer).toBe("stdin: fix the bug\nenv: fix the bug\nall done");
  });

  it("reports the agent's exit code", async () => {
    const { handle } = await start(`${fixture("echo-agent.sh")} 3`);
    expect(await handle.done).toMatchObject({ exitCode: 3, signal: null });
  });

  it("turns JSON protocol lines into message, tool, usage events and the answer", async () => {
    const { handle, log } = await start(fixture("protocol-agent.sh"));
    const exit = await handle.done;
    expect(exit.answer).toBe("the answer");
    expect(log.text(OutputStream.STDOUT)).toEqual([
      "plain output",
      '{"hookmesh": 2, "message": "another protocol version is plain output"}',
      "more plain output",
    ]);
    expect(log.text(OutputStream.AGENT)).toEqual(["reading the code"]);
    expect(log.toolCalls()).toEqual([{ name: "git", detail: "git diff --stat" }]);
    // Running totals: a field left out keeps its last value.
    expect(
      log.usage().map(({ costUsd, inputTokens, outputTokens }) => ({ costUsd, inputTokens, outputTokens })),
    ).toEqual([
      { costUsd: 0.25, inputTokens: 1000n, outputTokens: 200n },
      { costUsd: 0.5, inputTokens: 1000n, outputTokens: 200n },
    ]);
    expect(log.events.map((e) => e.case)).toEqual([
      "output",
      "output",
      "toolCall",
      "usage",
      "usage",
      "output",
      "output",
    ]);
  });

  it("ignores protocol fields of the wrong type", async () => {
    const { handle, log } = await start(
      `echo '{"hookmesh": 1, "cost_usd": "lots", "input_tokens": -5, "tool": "x", "answer": 42}'; echo fallback`,
    );
    const exit = await handle.done;
    expect(log.usage()).toEqual([]);
    expect(log.toolCalls()).toEqual([]);
    expect(exit.answer).toBe("fallback");
  });

  it("cuts long lines to the chunk size and marks them truncated, on a character boundary", async () => {
    const { handle, log } = await start(`printf 'é%.0s' $(seq 1 100); echo; echo short`, {}, 101);
    const exit = await handle.done;
    const [long, short] = log.output(OutputStream.STDOUT);
    expect(long).toMatchObject({ text: "é".repeat(50), truncated: true });
    expect(short).toMatchObject({ text: "short", truncated: false });
    // The answer is not an event: it keeps the whole line.
    expect(exit.answer).toBe(`${"é".repeat(100)}\nshort`);
  });

  it("keeps only the end of a long stdout as the answer", async () => {
    const { handle } = await start(`seq 1 30000`);
    const { answer } = await handle.done;
    expect(answer.endsWith("\n29999\n30000")).toBe(true);
    expect(answer.length).toBeLessThanOrEqual(64 * 1024);
    expect(answer.startsWith("1\n")).toBe(false);
  });

  it("passes the profile's model as HOOKMESH_MODEL", async () => {
    const { handle } = await start(`echo "model=$HOOKMESH_MODEL"`, { profile: profile({ model: "opus" }) });
    expect((await handle.done).answer).toBe("model=opus");
  });

  it("runs in the run's directory with exactly the environment it is given", async () => {
    const { handle, log } = await start(fixture("env-agent.sh"), { env: { PATH: process.env.PATH!, ONLY_THIS: "1" } });
    await handle.done;
    const lines = log.text(OutputStream.STDOUT);
    expect(lines[0]).toBe(`pwd ${workdir}`);
    expect(lines).toContain("ONLY_THIS=1");
    // sh adds PWD (and may add SHLVL / OLDPWD) itself; nothing of the worker's reaches it.
    const names = lines.slice(1).map((l) => l.split("=")[0]);
    expect(names.filter((n) => !["PATH", "ONLY_THIS", "PWD", "SHLVL", "OLDPWD", "_"].includes(n!))).toEqual([]);
  });

  it("cannot start without AGENT_COMMAND, and says so", async () => {
    const runner = new CommandRunner(settings());
    await expect(
      runner.start({ prompt: "", profile: profile(), workdir, env: {}, logger: testLogger, onEvent: () => {} }),
    ).rejects.toThrow(new RunnerUnavailableError("AGENT_COMMAND is not set"));
  });

  it("stops the agent's whole process group on stop()", async () => {
    const { handle } = await start(`${fixture("hanging-agent.sh")}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    handle.stop();
    const exit = await handle.done;
    // bwrap passes on how the sandbox ended as a shell would: 128 + SIGTERM.
    expect(exit).toMatchObject({ exitCode: 143, signal: null });
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
