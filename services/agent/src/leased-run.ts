import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { contextFromTraceparent, type Env, inSpan, type Logger, TRACE_ATTRIBUTES } from "@hookmesh/kit";
import { SpanKind } from "@opentelemetry/api";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { AgentProfileSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import {
  RunOutcome,
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskResultSchema,
  ToolCallEventSchema,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { Lease, WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { AgentRun, type Clock, type RunReport, type StopReason } from "./agent-run.js";
import { EventReporter } from "./event-reporter.js";
import type { RunObserver } from "./metrics.js";
import {
  acknowledgmentText,
  answerText,
  failureText,
  progressText,
  retryingText,
  taskLink,
} from "./replies/messages.js";
import { noopReplier, type Replier, type ReplierFactory } from "./replies/replier.js";
import type { Runners } from "./runners/index.js";
import type { AgentEvent } from "./runners/runner.js";
import type { Checkouts } from "./workspace/checkout.js";
import type { Publisher } from "./workspace/publish.js";

export interface LeasedRunSettings {
  defaultRunner: string;
  maxRunTimeMs: number;
  workdirRoot: string;
  workerEnv: Env;
  eventFlushMs: number;
  eventBatchSize: number;
  /** Where the dashboard is, for the link in replies. Default http://127.0.0.1:8070. */
  dashboardUrl?: string;
  /** Least time between progress edits of the acknowledgment. Default 15s; 0 turns them off. */
  progressIntervalMs?: number;
  /** AGENT_CONFIG_BUNDLES_DIR. */
  configBundlesDir?: string;
}

export const DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8070";
export const DEFAULT_PROGRESS_INTERVAL_MS = 15_000;

export interface LeasedRunDeps {
  worker: Client<typeof WorkerService>;
  runners: Runners;
  settings: LeasedRunSettings;
  clock: Clock;
  logger: Logger;
  /** Answers where the task's event came from; nothing is posted without it. */
  replies?: ReplierFactory;
  /** Checks out the task's repository, when it names one. */
  checkouts?: Checkouts;
  /** Publishes the changes of a successful run on a repository as a pull request. */
  publisher?: Publisher;
  /** Told how each run ended, for metrics. */
  observer?: RunObserver;
}

/** For a lease that names no heartbeat interval. */
const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
/** A lease lasts this many heartbeat intervals from its last renewal. */
const LEASE_HEARTBEATS = 3;
/** How much sooner than the interval a failed heartbeat is tried again. */
const HEARTBEAT_RETRIES_PER_INTERVAL = 4;

/**
 * One leased task, from lease to result: runs its agent, keeps the lease with heartbeats,
 * reports the agent's events, and ends with CompleteTask or FailTask. A lost lease stops the
 * agent and reports nothing: the task belongs to another worker by then.
 */
export class LeasedRun {
  readonly task: Task;
  readonly runnerName: string;
  readonly startTime: number;
  private readonly leaseId: string;
  private readonly heartbeatIntervalMs: number;
  private readonly agent: AgentRun | undefined;
  private readonly events: EventReporter;
  private readonly logger: Logger;
  private readonly replier: Replier;
  private readonly link: string;
  private leaseLost = false;
  private cancelRequested = false;

  constructor(
    lease: Lease & { task: Task },
    private readonly deps: LeasedRunDeps,
  ) {
    const { settings } = deps;
    this.task = lease.task;
    this.leaseId = lease.leaseId;
    this.runnerName = this.task.profile?.runner || settings.defaultRunner;
    this.startTime = deps.clock.now();
    this.logger = deps.logger.child({ taskId: this.task.id, attempt: this.task.attempt, runner: this.runnerName });
    const heartbeatMs = lease.heartbeatInterval ? durationMs(lease.heartbeatInterval) : 0;
    this.heartbeatIntervalMs = heartbeatMs > 0 ? heartbeatMs : DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.events = new EventReporter({
      send: (batch) => this.sendEvents(batch),
      flushIntervalMs: settings.eventFlushMs,
      batchSize: settings.eventBatchSize,
      logger: this.logger,
    });
    this.link = taskLink(settings.dashboardUrl ?? DEFAULT_DASHBOARD_URL, this.task.id);
    this.replier =
      deps.replies?.(this.task, (name, detail) =>
        this.events.add(this.taskEvent({ case: "toolCall", value: create(ToolCallEventSchema, { name, detail }) })),
      ) ?? noopReplier;
    const runner = deps.runners.get(this.runnerName);
    this.agent =
      runner &&
      new AgentRun({
        taskId: this.task.id,
        prompt: this.task.prompt,
        profile: this.task.profile ?? create(AgentProfileSchema),
        runnerName: this.runnerName,
        runner,
        defaultMaxRunTimeMs: settings.maxRunTimeMs,
        workdirRoot: settings.workdirRoot,
        workerEnv: settings.workerEnv,
        clock: deps.clock,
        logger: this.logger,
        onEvent: (event) => this.events.add(this.taskEvent(event)),
        ...(this.task.repository && { repository: this.task.repository }),
        ...(deps.checkouts && { checkouts: deps.checkouts }),
        ...(settings.configBundlesDir !== undefined && { configBundlesDir: settings.configBundlesDir }),
        ...(deps.publisher && { publish: { publisher: deps.publisher, link: this.link } }),
      });
  }

  get pid(): number | undefined {
    return this.agent?.pid;
  }

  get costUsd(): number {
    return this.agent?.costUsd ?? 0;
  }

  stop(reason: StopReason): void {
    this.agent?.stop(reason);
  }

  /**
   * Runs the task to its reported end; never rejects. The run is a span of the delivery's trace,
   * continued from the context the task carries across the queue, so that its RPCs (the
   * replies, the heartbeats, the result) and log lines belong to the delivery.
   */
  async execute(): Promise<void> {
    const { task } = this;
    const attributes = {
      [TRACE_ATTRIBUTES.taskId]: task.id,
      [TRACE_ATTRIBUTES.deliveryId]: task.event?.deliveryId,
      [TRACE_ATTRIBUTES.provider]: task.event ? Provider[task.event.provider].toLowerCase() : undefined,
      [TRACE_ATTRIBUTES.routeId]: task.routeId,
      [TRACE_ATTRIBUTES.attempt]: task.attempt,
      "hookmesh.runner": this.runnerName,
    };
    const parent = contextFromTraceparent(task.event?.traceContext);
    await inSpan("agent.run", { parent, kind: SpanKind.CONSUMER, attributes }, (span) =>
      this.executeInSpan((outcome) => span.setAttribute("hookmesh.outcome", outcome)),
    );
  }

  private async executeInSpan(onOutcome: (outcome: string) => void): Promise<void> {
    const heartbeating = new AbortController();
    const heartbeats = this.heartbeat(heartbeating.signal);
    let report: RunReport;
    if (this.agent) {
      await this.replier.acknowledge(acknowledgmentText(this.task, this.link));
      const progress = this.startProgress();
      report = await this.agent.run();
      await progress();
      // Before the result is reported, while the lease holds: the reply then lands in the
      // task's timeline like every other call of the run.
      if (!this.leaseLost) await this.replier.finish(...this.finalReply(report));
    } else report = this.unknownRunner();
    await this.events.close();
    heartbeating.abort();
    await heartbeats;
    this.deps.observer?.ended(this.task, report.result, this.leaseLost);
    onOutcome(this.leaseLost ? "LEASE_LOST" : RunOutcome[report.result.outcome]);
    if (this.leaseLost) {
      this.logger.warn(
        { outcome: RunOutcome[report.result.outcome] },
        "lease lost: run abandoned, the task is another worker's now",
      );
      return;
    }
    await this.reportResult(report);
  }

  /** Edits the acknowledgment with progress every interval while the agent runs; returns its stop. */
  private startProgress(): () => Promise<void> {
    const intervalMs = this.deps.settings.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    if (intervalMs <= 0) return async () => {};
    let inFlight: Promise<void> | undefined;
    const timer = setInterval(() => {
      if (inFlight) return; // a slow edit is not queued behind: the next tick tells more
      const text = progressText(this.task, this.link, this.deps.clock.now() - this.startTime, this.costUsd);
      inFlight = this.replier.progress(text).finally(() => (inFlight = undefined));
    }, intervalMs);
    timer.unref?.();
    return async () => {
      clearInterval(timer);
      await inFlight;
    };
  }

  /**
   * The reply a run ends with, by what the tasks service will make of the result: it cancels a
   * task whose cancel was asked, and queues a retryable failure again while attempts remain.
   */
  private finalReply({ result, retryable, publication }: RunReport): [text: string, final: boolean] {
    const elapsedMs = result.duration ? durationMs(result.duration) : this.deps.clock.now() - this.startTime;
    if (result.outcome === RunOutcome.SUCCEEDED) return [answerText(result, this.link, elapsedMs, publication), true];
    const canceled = this.cancelRequested || result.outcome === RunOutcome.CANCELED;
    // Attempts whose lease was lost do not count against max_attempts.
    if (!canceled && retryable && this.task.attempt - this.task.lostLeases < this.task.maxAttempts)
      return [retryingText(this.task, result, this.link), false];
    return [failureText(this.task, result, this.link, elapsedMs, canceled), true];
  }

  /**
   * Renews the lease every heartbeat interval; a failed renewal is tried again soon rather than
   * an interval later, as a lease outlives only two missed heartbeats. A run that could not
   * renew for a whole lease stops its agent: the lease has surely expired on the service, whose
   * lock runs from when it received the last renewal, and the task may be running elsewhere.
   */
  private async heartbeat(signal: AbortSignal): Promise<void> {
    const intervalMs = this.heartbeatIntervalMs;
    // The tasks service asks for a heartbeat every third of the lease (TASKS_LEASE_MS).
    const leaseMs = LEASE_HEARTBEATS * intervalMs;
    const { clock } = this.deps;
    let renewedAt = clock.now();
    let nextAt = renewedAt + intervalMs;
    while (!this.leaseLost) {
      try {
        await sleep(Math.max(0, nextAt - clock.now()), undefined, { signal });
        const leftMs = renewedAt + leaseMs - clock.now();
        if (leftMs <= 0) {
          this.logger.warn(
            { leaseMs },
            "no heartbeat got through for a whole lease: stopping the agent, the task may run elsewhere now",
          );
          this.loseLease();
          return;
        }
        const sentAt = clock.now();
        const res = await this.deps.worker.heartbeat(
          { taskId: this.task.id, leaseId: this.leaseId },
          { signal, timeoutMs: Math.min(intervalMs, leftMs) },
        );
        renewedAt = sentAt;
        nextAt = sentAt + intervalMs;
        if (res.cancelRequested) this.cancel("heartbeat");
      } catch (err) {
        if (signal.aborted) return;
        const error = ConnectError.from(err);
        if (isLeaseLost(error)) {
          this.loseLease();
          return;
        }
        this.logger.warn({ code: Code[error.code], error: error.rawMessage }, "heartbeat failed; trying again");
        nextAt = clock.now() + intervalMs / HEARTBEAT_RETRIES_PER_INTERVAL;
      }
    }
  }

  private async sendEvents(batch: TaskEvent[]): Promise<void> {
    if (this.leaseLost) return;
    try {
      const res = await this.deps.worker.reportEvents({ taskId: this.task.id, leaseId: this.leaseId, events: batch });
      if (res.cancelRequested) this.cancel("event report");
    } catch (err) {
      // Events of a lost lease belong to nobody: dropped, not retried.
      if (!isLeaseLost(err)) throw err;
      this.loseLease();
    }
  }

  private async reportResult({ result, retryable }: RunReport): Promise<void> {
    const ids = { taskId: this.task.id, leaseId: this.leaseId };
    const fields = {
      outcome: RunOutcome[result.outcome],
      exitCode: result.exitCode,
      costUsd: result.costUsd,
      error: result.error || undefined,
    };
    try {
      if (result.outcome === RunOutcome.SUCCEEDED) await this.deps.worker.completeTask({ ...ids, result });
      else await this.deps.worker.failTask({ ...ids, result, retryable });
      this.logger.info({ ...fields, retryable }, "run ended");
    } catch (err) {
      if (isLeaseLost(err)) this.logger.warn(fields, "lease lost before the run's result was reported");
      // The lease expires and the task runs again: at least once, never lost.
      else this.logger.error({ ...fields, err }, "could not report the run's result");
    }
  }

  private loseLease(): void {
    this.leaseLost = true;
    this.stop("lease_lost");
  }

  private cancel(via: string): void {
    if (this.cancelRequested) return;
    this.cancelRequested = true;
    this.logger.info({ via }, "cancel requested: stopping the agent");
    this.stop("cancel");
  }

  private unknownRunner(): RunReport {
    const known = [...this.deps.runners.keys()].join(", ");
    const error = `unknown runner "${this.runnerName}"; this worker runs ${known}`;
    return {
      result: create(TaskResultSchema, { outcome: RunOutcome.AGENT_ERROR, exitCode: -1, error }),
      retryable: false,
    };
  }

  private taskEvent(kind: AgentEvent): TaskEvent {
    return create(TaskEventSchema, { time: timestampFromMs(this.deps.clock.now()), kind });
  }
}

function isLeaseLost(err: unknown): boolean {
  return ConnectError.from(err).code === Code.FailedPrecondition;
}
