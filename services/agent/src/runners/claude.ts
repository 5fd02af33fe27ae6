import type { AgentProfile } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { OutputStream } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { spawnAgentProcess } from "./agent-process.js";
import { outputEvent, toolCallEvent, truncateUtf8, usageEvent } from "./events.js";
import { isObject, parseJsonObject, tokenCount } from "./json.js";
import type { RunHandle, Runner, RunnerSettings, RunSpec } from "./runner.js";

/**
 * The `claude` runner: the Claude Code CLI (CLAUDE_BIN) in print mode,
 * `claude -p --output-format stream-json --verbose [--model M] [--max-budget-usd C]`, with
 * the prompt on stdin. It prints one JSON event per line; these become task events:
 *
 *   {"type":"system","subtype":"init","session_id":…,"model":…}      output (AGENT): session, model
 *   {"type":"assistant","message":{"content":[…]}}                    per content block:
 *       {"type":"text","text":…}                                      output (AGENT)
 *       {"type":"tool_use","id":…,"name":…,"input":{…}}                tool call, the input as detail
 *   {"type":"user","message":{"content":[{"type":"tool_result",…}]}}  tool call, "result: …" or "error: …"
 *   {"type":"result","subtype":"success"|"error_…","is_error":…,"result":…,
 *    "total_cost_usd":…,"usage":{"input_tokens":…,"output_tokens":…,…}}
 *                                                                    usage, and the run's answer
 *
 * Claude reports its cost only in the final result, so the profile's cap is also handed to it
 * as --max-budget-usd to enforce while it runs. Input tokens include cache reads and writes:
 * all of them are tokens the model read. Lines that are not JSON are kept as stdout output.
 */
export class ClaudeRunner implements Runner {
  constructor(private readonly settings: RunnerSettings) {}

  async start(spec: RunSpec): Promise<RunHandle> {
    const sandbox = await this.settings.sandbox.enter({
      workdir: spec.workdir,
      profile: spec.profile,
      logger: spec.logger,
      ...(spec.readonlyPaths && { readonlyPaths: spec.readonlyPaths }),
    });
    const chunkBytes = this.settings.outputChunkBytes;
    const stream = new ClaudeStream(spec.onEvent, chunkBytes);
    const agent = spawnAgentProcess({
      command: this.settings.claudeBin,
      args: claudeArgs(spec.profile),
      cwd: spec.workdir,
      env: spec.env,
      sandbox,
      stdin: spec.prompt,
      killGraceMs: this.settings.killGraceMs,
      onLine: (source, line, cut) => {
        if (source === "stdout") stream.line(line, cut);
        else if (line !== "") spec.onEvent(outputEvent(OutputStream.STDERR, line, chunkBytes, cut));
      },
    });
    return {
      pid: agent.pid,
      stop: agent.stop,
      done: agent.done.then((exit) => ({ ...exit, answer: stream.answer, error: exit.error ?? stream.error })),
    };
  }
}

function claudeArgs(profile: AgentProfile): string[] {
  const args = ["-p", "--output-format", "stream-json", "--verbose"];
  // Edits and local commands without asking by default: the sandbox, not a prompt nobody answers, is the boundary.
  args.push("--permission-mode", profile.permissionMode || "acceptEdits");
  if (profile.model !== "") args.push("--model", profile.model);
  if (profile.maxCostUsd > 0) args.push("--max-budget-usd", String(profile.maxCostUsd));
  return args;
}

/** Turns Claude's stream-json events into task events, and keeps the result. */
class ClaudeStream {
  answer = "";
  /** Set when the result says the run failed. */
  error: string | undefined;
  /** Tool names by tool_use id: results name only the id. */
  private readonly toolNames = new Map<string, string>();

  constructor(
    private readonly onEvent: RunSpec["onEvent"],
    private readonly chunkBytes: number,
  ) {}

  line(line: string, cut: boolean): void {
    const event = cut ? undefined : parseJsonObject(line);
    if (event === undefined) {
      if (line !== "") this.onEvent(outputEvent(OutputStream.STDOUT, line, this.chunkBytes, cut));
      return;
    }
    switch (event.type) {
      case "system":
        if (event.subtype === "init")
          this.agentText(`claude session ${String(event.session_id)}, model ${String(event.model)}`);
        break;
      case "assistant":
        for (const block of contentBlocks(event)) this.assistantBlock(block);
        break;
      case "user":
        for (const block of contentBlocks(event)) if (block.type === "tool_result") this.toolResult(block);
        break;
      case "result":
        this.result(event);
        break;
    }
  }

  private assistantBlock(block: Record<string, unknown>): void {
    if (block.type === "text" && typeof block.text === "string") this.agentText(block.text);
    if (block.type === "tool_use" && typeof block.name === "string") {
      if (typeof block.id === "string") this.toolNames.set(block.id, block.name);
      this.onEvent(toolCallEvent(block.name, JSON.stringify(block.input ?? {}), this.chunkBytes));
    }
  }

  private toolResult(block: Record<string, unknown>): void {
    const name = (typeof block.tool_use_id === "string" && this.toolNames.get(block.tool_use_id)) || "tool";
    const label = block.is_error === true ? "error" : "result";
    this.onEvent(toolCallEvent(name, `${label}: ${contentText(block.content)}`, this.chunkBytes));
  }

  private result(event: Record<string, unknown>): void {
    const usage = isObject(event.usage) ? event.usage : {};
    const tokens = (name: string) => tokenCount(usage[name]) ?? 0n;
    const cost = event.total_cost_usd;
    this.onEvent(
      usageEvent({
        costUsd: typeof cost === "number" && Number.isFinite(cost) ? cost : 0,
        inputTokens: tokens("input_tokens") + tokens("cache_creation_input_tokens") + tokens("cache_read_input_tokens"),
        outputTokens: tokens("output_tokens"),
      }),
    );
    if (typeof event.result === "string") this.answer = event.result;
    if (event.is_error === true || event.subtype !== "success") {
      const errors = Array.isArray(event.errors) ? event.errors.filter((e) => typeof e === "string").join("; ") : "";
      const detail = errors || (event.is_error === true ? this.answer : "");
      this.error = truncateUtf8(
        `claude ended with ${String(event.subtype)}${detail ? `: ${detail}` : ""}`,
        this.chunkBytes,
      ).text;
    }
  }

  private agentText(text: string): void {
    if (text !== "") this.onEvent(outputEvent(OutputStream.AGENT, text, this.chunkBytes));
  }
}

function contentBlocks(event: Record<string, unknown>): Record<string, unknown>[] {
  const content = isObject(event.message) ? event.message.content : undefined;
  return Array.isArray(content) ? content.filter(isObject) : [];
}

/** A tool result's content: a string, or text blocks. */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter(isObject)
    .map((block) => (typeof block.text === "string" ? block.text : ""))
    .join("\n");
}
