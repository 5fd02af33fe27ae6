import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { RunSandbox } from "../sandbox/sandbox.js";

export type StdStream = "stdout" | "stderr";

export interface AgentProcessOptions {
  command: string;
  args: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** The run's sandbox, which the process is started in; closed once the process has ended. */
  sandbox: RunSandbox;
  /** Written to the agent's stdin, which is then closed. */
  stdin: string;
  /** Between SIGTERM and SIGKILL to the process group. */
  killGraceMs: number;
  /** Each line of output, without its line break; `cut` when it was longer than a line may be. */
  onLine(stream: StdStream, line: string, cut: boolean): void;
}

export interface ProcessExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started. */
  error?: string;
}

export interface AgentProcess {
  readonly pid: number | undefined;
  /** Resolves once the agent exited and all its output was read; never rejects. */
  readonly done: Promise<ProcessExit>;
  /** SIGTERM to the whole process group, then SIGKILL after the grace. */
  stop(): void;
}

/**
 * Lines are kept whole up to this length so that protocol lines (which can carry a long
 * answer) parse; beyond it the rest of the line is dropped, so an agent that never prints a
 * newline cannot exhaust the worker's memory.
 */
const MAX_LINE_CHARS = 8 * 1024 * 1024;

/**
 * Starts an agent as the leader of a new process group, so that everything it starts
 * (shells, tools, `sleep 1000 &`) can be signalled at once. When the leader exits, what is
 * left of its group is terminated too: nothing of a run outlives it.
 *
 * In a sandbox the leader is bwrap, and the agent runs in the sandbox's own session, whose
 * group bwrap reports on fd 3: SIGTERM goes to that group (the agent may end gracefully), and
 * SIGKILL to bwrap's, whose end takes the sandbox's whole PID namespace with it.
 */
export function spawnAgentProcess(options: AgentProcessOptions): AgentProcess {
  const launch = options.sandbox.wrap({ command: options.command, args: [...options.args], env: options.env });
  const child = spawn(launch.command, launch.args, {
    cwd: options.cwd,
    env: launch.env,
    detached: true,
    stdio: launch.reportsSandboxPid ? ["pipe", "pipe", "pipe", "pipe"] : ["pipe", "pipe", "pipe"],
  });
  const pid = child.pid;
  let sandboxPid: number | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  if (launch.reportsSandboxPid) readSandboxPid(child.stdio[3] as Readable, (reported) => (sandboxPid = reported));

  /** Sends `signal` to a group; false when the group is gone. Signal 0 only checks. */
  const signalGroup = (signal: NodeJS.Signals | 0, group = pid): boolean => {
    if (group === undefined) return false;
    try {
      process.kill(-group, signal);
      return true;
    } catch (err) {
      // EPERM: a member runs as another user (a setuid tool); nothing more can be done about it.
      return (err as NodeJS.ErrnoException).code !== "ESRCH";
    }
  };
  const terminate = () => {
    if (killTimer !== undefined) return;
    signalGroup("SIGTERM", sandboxPid ?? pid);
    killTimer = setTimeout(() => {
      if (sandboxPid !== undefined) signalGroup("SIGKILL", sandboxPid);
      signalGroup("SIGKILL");
    }, options.killGraceMs);
  };

  // An agent that does not read its stdin closes the pipe under us; that is its right.
  child.stdin.on("error", () => {});
  child.stdin.end(options.stdin);

  const done = new Promise<ProcessExit>((resolve) => {
    let exit: ProcessExit | undefined;
    let openStreams = 2;
    const settle = () => {
      if (exit === undefined || openStreams > 0) return;
      // The group is empty: the SIGKILL for stragglers is not needed.
      if (killTimer !== undefined && !signalGroup(0)) clearTimeout(killTimer);
      const ended = exit;
      options.sandbox.close().then(
        () => resolve(ended),
        (err: unknown) => resolve({ ...ended, error: ended.error ?? `cannot close the sandbox: ${String(err)}` }),
      );
    };
    const onStreamClosed = () => {
      openStreams--;
      settle();
    };
    readLines(child.stdout, (line, cut) => options.onLine("stdout", line, cut), onStreamClosed);
    readLines(child.stderr, (line, cut) => options.onLine("stderr", line, cut), onStreamClosed);

    child.on("error", (err) => {
      if (pid !== undefined) return;
      exit = { exitCode: null, signal: null, error: `cannot start ${launch.command}: ${err.message}` };
      settle();
    });
    child.once("exit", (exitCode, signal) => {
      exit = { exitCode, signal };
      // bwrap's end was the sandbox's end; its group's id may now be anyone's.
      sandboxPid = undefined;
      // Background processes of the agent would hold its pipes open (and outlive the run).
      terminate();
      // A process that left the group can still hold the pipes: stop reading once it should be dead.
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, options.killGraceMs + 1_000).unref();
      settle();
    });
  });

  return { pid, done, stop: terminate };
}

/** bwrap's --info-fd JSON: `child-pid` leads the sandbox's session and process group. */
function readSandboxPid(stream: Readable, onPid: (pid: number) => void): void {
  let text = "";
  stream.setEncoding("utf8");
  // Read to the end, not only to the pid: bwrap dies of SIGPIPE when its info fd is closed early.
  stream.on("data", (chunk: string) => {
    if (text.length > 64 * 1024) return;
    text += chunk;
    const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
    if (match) onPid(Number(match[1]));
  });
  stream.on("error", () => {});
}

function readLines(stream: Readable, onLine: (line: string, cut: boolean) => void, onClose: () => void): void {
  const decoder = new StringDecoder("utf8");
  let line = "";
  let cut = false;
  const emit = () => {
    onLine(line.endsWith("\r") ? line.slice(0, -1) : line, cut);
    line = "";
    cut = false;
  };
  const append = (text: string) => {
    if (cut) return;
    line += text;
    if (line.length > MAX_LINE_CHARS) {
      line = line.slice(0, MAX_LINE_CHARS);
      cut = true;
    }
  };
  stream.on("data", (chunk: Buffer) => {
    const parts = decoder.write(chunk).split("\n");
    for (const [i, part] of parts.entries()) {
      append(part);
      if (i < parts.length - 1) emit();
    }
  });
  stream.once("close", () => {
    append(decoder.end());
    if (line !== "") emit();
    onClose();
  });
}
