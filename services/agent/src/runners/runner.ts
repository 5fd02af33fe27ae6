import type { Logger } from "@hookmesh/kit";
import type { AgentProfile } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import type { TaskEvent } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { Sandbox } from "../sandbox/sandbox.js";

/** What an agent reports while it runs: output, tool calls, usage (and the worker's stages). */
export type AgentEvent = Exclude<TaskEvent["kind"], { case: undefined }>;

/** One agent run, as a runner needs it. */
export interface RunSpec {
  prompt: string;
  profile: AgentProfile;
  /** The run's own directory: the agent's working directory, removed after the run. */
  workdir: string;
  /** The agent's whole environment; nothing of the worker's is added to it. */
  env: Record<string, string>;
  /** Host paths the sandbox shows read-only at the same place (a checkout's borrowed objects). */
  readonlyPaths?: readonly string[];
  /** The run's logger, for what the sandbox says about it. */
  logger: Logger;
  onEvent(event: AgentEvent): void;
}

export interface RunExit {
  /** The process's exit code; null when it was killed by a signal or never started. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  answer: string;
  /** Why the run failed when the runner knows better than the exit code (e.g. could not start). */
  error?: string;
}

export interface RunHandle {
  /** Undefined when the process could not be started. */
  readonly pid: number | undefined;
  /** Resolves once the agent and every process it started are gone; never rejects. */
  readonly done: Promise<RunExit>;
  /** Stops the agent's whole process group: SIGTERM, then SIGKILL after the kill grace. */
  stop(): void;
}

/** A way to run an agent CLI. Adding one is a file like `command.ts` and a line in `index.ts`. */
export interface Runner {
  /**
   * Starts the agent in its sandbox; rejects with RunnerUnavailableError when this worker
   * cannot run it at all, and InvalidProfileError when the profile asks for what no worker can give.
   */
  start(spec: RunSpec): Promise<RunHandle>;
}

/** The runner cannot run on this worker (e.g. it is not configured); retrying here will not help. */
export class RunnerUnavailableError extends Error {
  override name = "RunnerUnavailableError";
}

/** What runners take from the worker's configuration. */
export interface RunnerSettings {
  agentCommand: string | undefined;
  claudeBin: string;
  killGraceMs: number;
  outputChunkBytes: number;
  /** Where every run is started: bubblewrap, or nothing with AGENT_SANDBOX=off. */
  sandbox: Sandbox;
}
