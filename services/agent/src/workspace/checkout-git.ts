import { spawn } from "node:child_process";

/** A git command that failed: its stderr (which never holds a token: none is in any URL), and whether it ran out of time. */
export class GitCommandError extends Error {
  override name = "GitCommandError";
  constructor(
    message: string,
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(message);
  }
}

export interface GitRun {
  /** The command's whole environment (see `gitEnv`). */
  env: Record<string, string>;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * The environment of every git the worker runs: no system or global configuration (nothing of
 * the worker's own git setup, credential helpers included), never a prompt, LFS smudging off
 * unless asked for. With a token, the one configuration entry that sends it as HTTP Basic
 * `x-access-token:<token>`, only to `gitUrl`: passed as GIT_CONFIG_KEY/VALUE, so it is in no
 * file, no URL and no argument list (another user's processes cannot read it; the sandboxed
 * agent cannot see the worker's processes at all).
 */
export function gitEnv(
  path: string,
  { gitUrl, token, lfs = false }: { gitUrl?: string; token?: string; lfs?: boolean } = {},
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: path,
    HOME: "/nonexistent",
    LANG: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "/bin/false",
    GIT_CONFIG_COUNT: "0",
  };
  if (!lfs) env.GIT_LFS_SKIP_SMUDGE = "1";
  if (gitUrl !== undefined && token !== undefined && token !== "") {
    env.GIT_CONFIG_COUNT = "1";
    env.GIT_CONFIG_KEY_0 = `http.${gitUrl}/.extraHeader`;
    env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
  }
  return env;
}

/**
 * Runs git in its own process group, so that a timeout or an abort also ends the transport
 * helpers it started (git-remote-https). Resolves with stdout.
 */
export function runGit(args: readonly string[], run: GitRun): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { env: run.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, run.timeoutMs);
    run.signal?.addEventListener("abort", kill, { once: true });
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => {
      if (stderr.length < 16_384) stderr += chunk.toString();
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new GitCommandError(`git ${args[0]}: ${err.message}`, "", false));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      run.signal?.removeEventListener("abort", kill);
      if (code === 0) return resolve(stdout);
      const why = timedOut
        ? `timed out after ${run.timeoutMs} ms`
        : run.signal?.aborted
          ? "stopped"
          : (lastLine(stderr) ?? `exit ${code ?? signal}`);
      reject(new GitCommandError(`git ${gitVerb(args)}: ${why}`, stderr, timedOut));
    });
  });
}

/** The subcommand, past `-C dir` and `-c key=value` options. */
function gitVerb(args: readonly string[]): string {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-C" || args[i] === "-c") i++;
    else return args[i]!;
  }
  return "";
}

function lastLine(text: string): string | undefined {
  const lines = text
    .trim()
    .split("\n")
    .filter((line) => line.trim() !== "");
  return lines.at(-1)?.trim().slice(0, 500);
}
