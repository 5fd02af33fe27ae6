import { existsSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AgentProfile } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { OutputStream, RunOutcome, TaskStage } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { AgentRun, type AgentRunOptions, systemClock } from "../src/agent-run.js";
import { createRunners } from "../src/runners/index.js";
import { alive, descendants, eventLog, fixture, profile, scratchDir, settings, waitFor } from "./helpers.js";

describe("AgentRun", () => {
  let root: string;
  beforeEach(async () => {
    root = await scratchDir("runs");
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  function agentRun(
    command: string | undefined,
    runProfile: AgentProfile = profile(),
    overrides: Partial<AgentRunOptions> = {},
  ) {
    const log = eventLog();
    const runnerName = runProfile.runner || "command";
    const run = new AgentRun({
      taskId: "task-1",
      prompt: "fix the bug",
      profile: runProfile,
      runnerName,
      runner: createRunners(settings({ agentCommand: command, killGraceMs: 300 })).get(runnerName)!,
      defaultMaxRunTimeMs: 60_000,
      workdirRoot: `${root}/runs`,
      workerEnv: { PATH: process.env.PATH, HOME: "/home/worker", SECRET_X: "hunter2", FAKE_CLAUDE_SCENARIO: "success" },
      clock: systemClock,
      logger: memoryLogger("agent-run-test").logger,
      onEvent: log.onEvent,
      ...overrides,
    });
    return { run, log };
  }

  /**
   * Once hanging-agent.sh runs in its sandbox: the host's view of every process of the run
   * (bwrap and all it started; the pids the agent prints are the sandbox's own).
   */
  async function hangingAgent(run: AgentRun, log: ReturnType<typeof eventLog>) {
    await waitFor(() => log.text(OutputStream.STDOUT).length >= 2);
    return { processes: [run.pid!, ...descendants(run.pid!)] };
  }

  it("succeeds with the answer, exit code, usage and duration, after a STARTED stage", async () => {
    const { run, log } = agentRun(`${fixture("protocol-agent.sh")}`);
    const { result, retryable } = await run.run();
    expect(result).toMatchObject({
      outcome: RunOutcome.SUCCEEDED,
      exitCode: 0,
      answer: "the answer",
      error: "",
      costUsd: 0.5,
      inputTokens: 1000n,
      outputTokens: 200n,
    });
    expect(durationMs(result.duration!)).toBeGreaterThan(0);
    expect(retryable).toBe(false);
    expect(log.events[0]).toMatchObject({
      case: "stage",
      value: { stage: TaskStage.STARTED, detail: expect.stringMatching(/^runner command, pid \d+$/) },
    });
  });

  it("fails an agent that exits non-zero as a retryable AGENT_ERROR", async () => {
    const { run } = agentRun(`${fixture("echo-agent.sh")} 7`);
    const { result, retryable } = await run.run();
    expect(result).toMatchObject({ outcome: RunOutcome.AGENT_ERROR, exitCode: 7, error: "agent exited with code 7" });
    expect(retryable).toBe(true);
  });

  it("times out a hanging agent, not retryable, and leaves nothing of its process group", async () => {
    const { run, log } = agentRun(fixture("hanging-agent.sh"), profile({ maxRunTimeMs: 500 }));
    const done = run.run();
    const { processes } = await hangingAgent(run, log);
    // bwrap, its init, the shell and its two sleeps.
    expect(processes.length).toBeGreaterThanOrEqual(4);
    const { result, retryable } = await done;
    expect(result).toMatchObject({ outcome: RunOutcome.TIMED_OUT, exitCode: 143, error: "timed out after 500 ms" });
    expect(retryable).toBe(false);
    await waitFor(() => alive(processes).length === 0, 2_000);
  });

  it("kills an agent that ignores SIGTERM after the kill grace", async () => {
    // exec: the stubborn script itself leads the group, instead of the shell that starts it.
    const { run, log } = agentRun(`exec ${fixture("hanging-agent.sh")} stubborn`, profile({ maxRunTimeMs: 300 }));
    const started = Date.now();
    const done = run.run();
    const { processes } = await hangingAgent(run, log);
    const { result } = await done;
    expect(result).toMatchObject({ outcome: RunOutcome.TIMED_OUT, exitCode: 137 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300 + 300);
    await waitFor(() => alive(processes).length === 0, 2_000);
  });

  it("stops on cancel within seconds, not retryable", async () => {
    const { run, log } = agentRun(fixture("hanging-agent.sh"));
    const done = run.run();
    const { processes } = await hangingAgent(run, log);
    const canceledAt = Date.now();
    run.stop("cancel");
    run.stop("shutdown");
    const { result, retryable } = await done;
    expect(Date.now() - canceledAt).toBeLessThan(2_000);
    expect(result).toMatchObject({ outcome: RunOutcome.CANCELED, error: "canceled" });
    expect(retryable).toBe(false);
    await waitFor(() => alive(processes).length === 0, 2_000);
  });

  it("fails a run stopped for a worker shutdown as retryable", async () => {
    const { run, log } = agentRun(fixture("hanging-agent.sh"));
    const done = run.run();
    await hangingAgent(run, log);
    run.stop("shutdown");
    expect(await done).toMatchObject({ result: { outcome: RunOutcome.WORKER_SHUTDOWN }, retryable: true });
  });

  it("stops an agent whose reported cost goes over the profile's cap, not retryable", async () => {
    const { run } = agentRun(fixture("cost-agent.sh"), profile({ maxCostUsd: 1 }));
    const { result, retryable } = await run.run();
    expect(result).toMatchObject({
      outcome: RunOutcome.COST_CAP,
      costUsd: 2.5,
      inputTokens: 5000n,
      outputTokens: 800n,
      error: "cost cap $1.00 reached at $2.50",
    });
    expect(retryable).toBe(false);
  });

  it("marks a claude run whose final cost is over the cap", async () => {
    const { run } = agentRun(
      undefined,
      profile({ runner: "claude", maxCostUsd: 0.05, allowedEnv: ["FAKE_CLAUDE_SCENARIO"] }),
    );
    const { result } = await run.run();
    expect(result).toMatchObject({
      outcome: RunOutcome.COST_CAP,
      costUsd: 0.0734,
      answer: "Fixed the off-by-one in add(); the test passes now.",
    });
  });

  it("runs in a fresh directory under the root and removes it afterwards", async () => {
    const { run, log } = agentRun(`pwd; touch made-by-agent; mkdir -p deep/er; echo x > deep/er/file`);
    await run.run();
    const workdir = log.text(OutputStream.STDOUT)[0]!;
    expect(workdir.startsWith(`${root}/runs/run-`)).toBe(true);
    expect(existsSync(workdir)).toBe(false);
    expect(await readdir(`${root}/runs`)).toEqual([]);
  });

  it("gives the agent only the base environment, the task's variables and what the profile allows", async () => {
    const env = async (runProfile: AgentProfile) => {
      const { run, log } = agentRun(fixture("env-agent.sh"), runProfile);
      await run.run();
      return Object.fromEntries(
        log
          .text(OutputStream.STDOUT)
          .slice(1)
          .map((line) => line.split(/=(.*)/s).slice(0, 2)),
      );
    };
    const isolated = await env(profile());
    expect(isolated).toMatchObject({
      PATH: process.env.PATH,
      HOOKMESH_TASK_ID: "task-1",
      HOOKMESH_PROMPT: "fix the bug",
    });
    expect(isolated.HOME).toMatch(/\/runs\/run-[^/]+\/\.home$/);
    // Inside HOME, which a commit of a checkout leaves out.
    expect(isolated.TMPDIR).toBe(`${isolated.HOME}/tmp`);
    expect(isolated.SECRET_X).toBeUndefined();
    const allowed = await env(profile({ allowedEnv: ["SECRET_X", "NOT_SET_ON_THE_WORKER"] }));
    expect(allowed.SECRET_X).toBe("hunter2");
    expect(allowed).not.toHaveProperty("NOT_SET_ON_THE_WORKER");
  });

  it("gives a prompt too long for the environment on stdin only", async () => {
    const prompt = "p".repeat(200 * 1024);
    const { run, log } = agentRun(`echo "env: \${HOOKMESH_PROMPT:-unset}"; wc -c`, profile(), { prompt });
    await run.run();
    expect(log.text(OutputStream.STDOUT)).toEqual(["env: unset", String(prompt.length)]);
  });

  it("fails, not retryable, when the runner cannot run on this worker", async () => {
    const { run } = agentRun(undefined);
    const { result, retryable } = await run.run();
    expect(result).toMatchObject({ outcome: RunOutcome.AGENT_ERROR, exitCode: -1, error: "AGENT_COMMAND is not set" });
    expect(retryable).toBe(false);
    expect(await readdir(`${root}/runs`)).toEqual([]);
  });

  it("does not start an agent stopped before it started", async () => {
    const { run, log } = agentRun("echo should not run");
    const done = run.run();
    run.stop("cancel");
    expect(await done).toMatchObject({ result: { outcome: RunOutcome.CANCELED, exitCode: -1 }, retryable: false });
    expect(log.events).toEqual([]);
  });
});
