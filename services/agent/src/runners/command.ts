import { OutputStream } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { spawnAgentProcess } from "./agent-process.js";
import { outputEvent, toolCallEvent, type Usage, usageEvent } from "./events.js";
import { isObject, parseJsonObject, tokenCount } from "./json.js";
import { type RunHandle, type Runner, type RunnerSettings, RunnerUnavailableError, type RunSpec } from "./runner.js";

/** Without an `answer` report, the answer is the end of stdout, up to this many characters. */
const ANSWER_TAIL_CHARS = 64 * 1024;

/**
 * The `command` runner: any CLI, given as AGENT_COMMAND and run with `/bin/sh -c` in the
 * run's directory. The agent reads the prompt from stdin or from HOOKMESH_PROMPT (and the
 * profile's model, if any, from HOOKMESH_MODEL). Every line it prints becomes an output
 * event of its stream.
 *
 * Optionally, it reports through a JSON line protocol: a stdout line that is a JSON object
 * with `"hookmesh": 1` is a report, not output. Its fields, each optional and combinable:
 *
 *   {"hookmesh": 1, "message": "Reading the failing test"}        output event, stream AGENT
 *   {"hookmesh": 1, "tool": {"name": "git", "detail": "git diff"}}  tool call event
 *   {"hookmesh": 1, "cost_usd": 0.42, "input_tokens": 1200, "output_tokens": 300}
 *                                                                   usage event
 *   {"hookmesh": 1, "answer": "Fixed in abc123"}                   the final answer
 *
 * Usage fields are running totals for the whole run, not increments; one left out keeps its
 * last value. The last `answer` wins; without one, the answer is the end of stdout (protocol
 * lines excluded). Fields of the wrong type are ignored.
 */
export class CommandRunner implements Runner {
  constructor(private readonly settings: RunnerSettings) {}

  async start(spec: RunSpec): Promise<RunHandle> {
    const command = this.settings.agentCommand;
    if (command === undefined) throw new RunnerUnavailableError("AGENT_COMMAND is not set");
    const sandbox = await this.settings.sandbox.enter({
      workdir: spec.workdir,
      profile: spec.profile,
      logger: spec.logger,
      ...(spec.readonlyPaths && { readonlyPaths: spec.readonlyPaths }),
    });
    const output = new CommandOutput(spec.onEvent, this.settings.outputChunkBytes);
    const agent = spawnAgentProcess({
      command: "/bin/sh",
      args: ["-c", command],
      cwd: spec.workdir,
      env: spec.profile.model === "" ? spec.env : { ...spec.env, HOOKMESH_MODEL: spec.profile.model },
      sandbox,
      stdin: spec.prompt,
      killGraceMs: this.settings.killGraceMs,
      onLine: (stream, line, cut) => (stream === "stdout" ? output.stdout(line, cut) : output.stderr(line, cut)),
    });
    return {
      pid: agent.pid,
      stop: agent.stop,
      done: agent.done.then((exit) => ({ ...exit, answer: output.answer() })),
    };
  }
}

/** Turns one command agent's lines into events, and keeps what its answer will be. */
class CommandOutput {
  private readonly usage: Usage = { costUsd: 0, inputTokens: 0n, outputTokens: 0n };
  private reportedAnswer: string | undefined;
  private readonly tail: string[] = [];
  private tailChars = 0;

  constructor(
    private readonly onEvent: RunSpec["onEvent"],
    private readonly chunkBytes: number,
  ) {}

  stdout(line: string, cut: boolean): void {
    const report = cut ? undefined : parseReport(line);
    if (report) return this.apply(report);
    this.keepForAnswer(line);
    if (line !== "") this.onEvent(outputEvent(OutputStream.STDOUT, line, this.chunkBytes, cut));
  }

  stderr(line: string, cut: boolean): void {
    if (line !== "") this.onEvent(outputEvent(OutputStream.STDERR, line, this.chunkBytes, cut));
  }

  answer(): string {
    return this.reportedAnswer ?? this.tail.join("\n").trim();
  }

  private apply(report: Record<string, unknown>): void {
    if (typeof report.message === "string") {
      this.onEvent(outputEvent(OutputStream.AGENT, report.message, this.chunkBytes));
    }
    const tool = report.tool;
    if (isObject(tool) && typeof tool.name === "string") {
      this.onEvent(toolCallEvent(tool.name, typeof tool.detail === "string" ? tool.detail : "", this.chunkBytes));
    }
    const cost = report.cost_usd;
    const costValid = typeof cost === "number" && Number.isFinite(cost) && cost >= 0;
    if (costValid) this.usage.costUsd = cost;
    const input = tokenCount(report.input_tokens);
    if (input !== undefined) this.usage.inputTokens = input;
    const output = tokenCount(report.output_tokens);
    if (output !== undefined) this.usage.outputTokens = output;
    if (costValid || input !== undefined || output !== undefined) this.onEvent(usageEvent({ ...this.usage }));
    if (typeof report.answer === "string") this.reportedAnswer = report.answer;
  }

  private keepForAnswer(line: string): void {
    const kept = line.slice(-ANSWER_TAIL_CHARS);
    this.tail.push(kept);
    this.tailChars += kept.length + 1;
    while (this.tailChars > ANSWER_TAIL_CHARS && this.tail.length > 1) this.tailChars -= this.tail.shift()!.length + 1;
  }
}

/** The line's report, when it is a protocol line. */
function parseReport(line: string): Record<string, unknown> | undefined {
  const value = parseJsonObject(line);
  return value?.hookmesh === 1 ? value : undefined;
}
