import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { constants } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { type Env, inSpan, type Logger } from "@hookmesh/kit";
import type { AgentProfile } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import {
  RunOutcome,
  StageEventSchema,
  type TaskRepository,
  type TaskResult,
  TaskResultSchema,
  TaskStage,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { Usage } from "./runners/events.js";
import {
  type AgentEvent,
  type RunExit,
  type RunHandle,
  type Runner,
  RunnerUnavailableError,
} from "./runners/runner.js";
import { InvalidProfileError } from "./sandbox/sandbox.js";
import { type Checkout, type Checkouts, copyConfigBundle, WorkspaceError } from "./workspace/checkout.js";
import { type Publication, PublishError, type Publisher } from "./workspace/publish.js";
import type { Workspace } from "./workspace/workspace.js";

/** Why a run was stopped before the agent ended it. */
export type StopReason = "timeout" | "cancel" | "cost_cap" | "shutdown" | "lease_lost";

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface AgentRunOptions {
  taskId: string;
  prompt: string;
  profile: AgentProfile;
  runnerName: string;
  runner: Runner;
  /** Longest run for a profile that sets no max run time. */
  defaultMaxRunTimeMs: number;
  /** The run's directory is made under this one. */
  workdirRoot: string;
  /** The worker's environment, from which the profile's `allowed_env` names are copied. */
  workerEnv: Env;
  clock: Clock;
  logger: Logger;
  onEvent(event: AgentEvent): void;
  /**
   * The checkout the agent works in (its working directory, left in place for whoever made
   * it); without one, a fresh directory, removed after the run: a checkout of `repository`
   * when the task names one (see `prepareWorkspace`), else empty.
   */
  workspace?: Workspace | undefined;
  /** Publishes a successful run's changes in its workspace; `link` is the task's page. */
  publish?: { publisher: Publisher; link: string } | undefined;
  /** The task's repository, checked out into the run's directory before the run. */
  repository?: TaskRepository;
  /** Makes that checkout; a run with a repository and no checkouts fails without retrying. */
  checkouts?: Checkouts;
  /** AGENT_CONFIG_BUNDLES_DIR: where the bundle a profile names is copied from. */
  configBundlesDir?: string;
}

export interface RunReport {
  result: TaskResult;
  /** For a run that did not succeed: whether another attempt may. */
  retryable: boolean;
  /** Where the run's changes were published, when it had any. */
  publication?: Publication;
}

const stopOutcomes: Readonly<Record<StopReason, { outcome: RunOutcome; retryable: boolean }>> = {
  // Another attempt would likely run as long and spend as much again.
  timeout: { outcome: RunOutcome.TIMED_OUT, retryable: false },
  cancel: { outcome: RunOutcome.CANCELED, retryable: false },
  cost_cap: { outcome: RunOutcome.COST_CAP, retryable: false },
  shutdown: { outcome: RunOutcome.WORKER_SHUTDOWN, retryable: true },
  // Never reported: the task belongs to another worker by now.
  lease_lost: { outcome: RunOutcome.UNSPECIFIED, retryable: true },
};

/**
 * Linux refuses to start a process with an environment string over 128 KiB; a longer prompt
 * reaches the agent on stdin only.
 */
const MAX_ENV_PROMPT_BYTES = 100 * 1024;

/** One agent run for a task, in its own directory and environment, within the profile's limits. */
export class AgentRun {
  private handle: RunHandle | undefined;
  private stopReason: StopReason | undefined;
  private usage: Usage = { costUsd: 0, inputTokens: 0n, outputTokens: 0n };
  /** Aborts a checkout in progress when the run is stopped. */
  private readonly preparing = new AbortController();
  private checkout: Checkout | undefined;

  constructor(private readonly options: AgentRunOptions) {}

  get pid(): number | undefined {
    return this.handle?.pid;
  }

  get costUsd(): number {
    return this.usage.costUsd;
  }

  /** Stops the agent; the first reason is the one reported. */
  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.preparing.abort();
    this.handle?.stop();
  }

  /** Runs the agent to its end and says how it went; never rejects. */
  async run(): Promise<RunReport> {
    const { options } = this;
    const started = options.clock.now();
    let workdir: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      await mkdir(options.workdirRoot, { recursive: true });
      const dir = options.workspace?.dir ?? (await mkdtemp(join(options.workdirRoot, "run-")));
      workdir = dir;
      await this.prepareWorkspace(dir);
      if (this.stopReason !== undefined) return this.report(notStarted, started);
      // The agent's process, from its start to its exit, as a span of the run.
      const exit = await inSpan(
        "agent.process",
        { attributes: { "hookmesh.runner": options.runnerName } },
        async (span) => {
          const handle = await options.runner.start({
            prompt: options.prompt,
            profile: options.profile,
            workdir: dir,
            env: agentEnv(options, dir),
            ...(this.checkout && { readonlyPaths: this.checkout.sandboxPaths }),
            logger: options.logger,
            onEvent: (event) => this.onEvent(event),
          });
          this.handle = handle;
          if (this.stopReason !== undefined) handle.stop();
          if (handle.pid !== undefined) {
            span.setAttribute("process.pid", handle.pid);
            const detail = `runner ${options.runnerName}, pid ${handle.pid}`;
            options.onEvent({ case: "stage", value: create(StageEventSchema, { stage: TaskStage.STARTED, detail }) });
          }
          timer = setTimeout(() => this.stop("timeout"), this.maxRunTimeMs());
          const done = await handle.done;
          span.setAttribute("process.exit.code", exitCodeOf(done));
          return done;
        },
      );
      const report = this.report(exit, started);
      clearTimeout(timer);
      return await this.publishChanges(report, started);
    } catch (err) {
      // A checkout cut short by a stop (cancel, shutdown, lease lost) ends as that stop says.
      if (this.stopReason !== undefined && this.handle === undefined) return this.report(notStarted, started);
      const error = err instanceof Error ? err.message : String(err);
      return {
        result: this.result(notStarted, started, { outcome: RunOutcome.AGENT_ERROR, error }),
        // A runner this worker cannot run stays so, as does a profile no worker can run; a
        // directory that could not be made may not; a checkout says which it is.
        retryable:
          err instanceof WorkspaceError
            ? err.retryable
            : !(err instanceof RunnerUnavailableError || err instanceof InvalidProfileError),
      };
    } finally {
      clearTimeout(timer);
      if (workdir !== undefined) {
        // A workspace is its maker's to remove; only the agent's HOME in it is the run's.
        const removed = options.workspace ? join(workdir, HOME_DIR) : workdir;
        await rm(removed, { recursive: true, force: true }).catch((err: unknown) =>
          options.logger.warn({ err, workdir }, "could not remove the run's directory"),
        );
      }
      this.checkout?.release();
    }
  }

  /** The checkout the run works in: given, or made before the agent starts until its directory is removed. */
  get workspace(): Workspace | undefined {
    return this.options.workspace ?? this.checkout?.workspace;
  }

  // ── Workspace: before the run, the run's directory becomes a checkout of the task's repository
  // (workspace/checkout.ts) and the profile's config bundle is copied into the agent's HOME;
  // after it, the directory is removed (run's `finally`) and the mirror released. ──
  private async prepareWorkspace(workdir: string): Promise<void> {
    const { options } = this;
    const settings = options.profile.workspace;
    if (options.repository && !options.workspace) {
      if (!options.checkouts) throw new WorkspaceError("this worker makes no checkouts", false);
      this.checkout = await options.checkouts.checkout({
        repository: options.repository,
        settings,
        dir: workdir,
        signal: this.preparing.signal,
        onEvent: options.onEvent,
      });
    }
    const home = join(workdir, HOME_DIR);
    await mkdir(join(home, TMP_IN_HOME), { recursive: true });
    if (settings?.configBundle) await copyConfigBundle(options.configBundlesDir, settings.configBundle, home);
  }

  /**
   * After a successful run, publish: the agent's changes in its workspace become a commit and
   * a pull request (workspace/publish.ts). A run that cannot publish what it made has failed.
   */
  private async publishChanges(report: RunReport, started: number): Promise<RunReport> {
    const { workspace } = this;
    const { publish } = this.options;
    if (report.result.outcome !== RunOutcome.SUCCEEDED || !workspace || !publish) return report;
    try {
      const publication = await publish.publisher.publish({
        taskId: this.options.taskId,
        workspace,
        profile: this.options.profile,
        answer: report.result.answer,
        link: publish.link,
        excluded: [HOME_DIR],
        onEvent: (event) => this.options.onEvent(event),
        signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
      });
      return publication ? { ...report, publication } : report;
    } catch (err) {
      const failure = err instanceof PublishError ? err : new PublishError(String(err), false);
      const result = create(TaskResultSchema, {
        ...report.result,
        outcome: RunOutcome.AGENT_ERROR,
        error: failure.message,
        duration: durationFromMs(this.options.clock.now() - started),
      });
      return { result, retryable: failure.retryable };
    }
  }

  private onEvent(event: AgentEvent): void {
    this.options.onEvent(event);
    if (event.case !== "usage") return;
    this.usage = {
      costUsd: event.value.costUsd,
      inputTokens: event.value.inputTokens,
      outputTokens: event.value.outputTokens,
    };
    const cap = this.options.profile.maxCostUsd;
    if (cap > 0 && this.usage.costUsd > cap) this.stop("cost_cap");
  }

  private report(exit: RunExit, started: number): RunReport {
    if (this.stopReason !== undefined) {
      const { outcome, retryable } = stopOutcomes[this.stopReason];
      return { result: this.result(exit, started, { outcome, error: this.stopError(this.stopReason) }), retryable };
    }
    if (exit.exitCode === 0 && exit.error === undefined) {
      return { result: this.result(exit, started, { outcome: RunOutcome.SUCCEEDED, error: "" }), retryable: false };
    }
    const error =
      exit.error ??
      (exit.exitCode !== null ? `agent exited with code ${exit.exitCode}` : `agent was killed by ${exit.signal}`);
    return { result: this.result(exit, started, { outcome: RunOutcome.AGENT_ERROR, error }), retryable: true };
  }

  private result(exit: RunExit, started: number, end: { outcome: RunOutcome; error: string }): TaskResult {
    return create(TaskResultSchema, {
      ...end,
      answer: exit.answer,
      exitCode: exitCodeOf(exit),
      ...this.usage,
      duration: durationFromMs(this.options.clock.now() - started),
    });
  }

  private stopError(reason: StopReason): string {
    switch (reason) {
      case "timeout":
        return `timed out after ${this.maxRunTimeMs()} ms`;
      case "cancel":
        return "canceled";
      case "cost_cap":
        return `cost cap $${this.options.profile.maxCostUsd.toFixed(2)} reached at $${this.usage.costUsd.toFixed(2)}`;
      case "shutdown":
        return "the worker shut down before the run ended";
      case "lease_lost":
        return "the lease was lost";
    }
  }

  private maxRunTimeMs(): number {
    const fromProfile = this.options.profile.maxRunTime ? durationMs(this.options.profile.maxRunTime) : 0;
    return fromProfile > 0 ? fromProfile : this.options.defaultMaxRunTimeMs;
  }
}

const notStarted: RunExit = { exitCode: null, signal: null, answer: "" };

/** As a shell reports it: 128 + the signal's number for a killed process, -1 for one never started. */
function exitCodeOf(exit: RunExit): number {
  if (exit.exitCode !== null) return exit.exitCode;
  return exit.signal !== null ? 128 + constants.signals[exit.signal] : -1;
}

/** Longest a publish (the commit and the github service's calls) may take after the run. */
const PUBLISH_TIMEOUT_MS = 5 * 60_000;

/** The agent's HOME, fresh in the run's directory: nothing of the worker's home reaches it. */
const HOME_DIR = ".home";
/**
 * The agent's TMPDIR, inside its HOME: in a checkout, HOME is what commits leave out, so the
 * agent's temporary files never end up in its pull request.
 */
const TMP_IN_HOME = "tmp";

/**
 * The agent's whole environment: a minimal base (PATH, LANG, a fresh HOME), the variables the
 * profile allows, and the task's own. The worker's other variables (its secrets among them) stay out.
 */
function agentEnv(
  options: Pick<AgentRunOptions, "workerEnv" | "profile" | "taskId" | "prompt">,
  workdir: string,
): Record<string, string> {
  const env: Record<string, string> = { HOME: join(workdir, HOME_DIR) };
  for (const name of ["PATH", "LANG", ...options.profile.allowedEnv]) {
    const value = options.workerEnv[name];
    if (value !== undefined) env[name] = value;
  }
  env.TMPDIR = join(workdir, HOME_DIR, TMP_IN_HOME);
  env.HOOKMESH_TASK_ID = options.taskId;
  if (Buffer.byteLength(options.prompt) <= MAX_ENV_PROMPT_BYTES) env.HOOKMESH_PROMPT = options.prompt;
  return env;
}
