import type { Client } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import { Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { GitHubService } from "../../../../gen/hookmesh/github/v1/github_pb.js";
import type { CallInfo } from "../../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import type { JiraService } from "../../../../gen/hookmesh/jira/v1/jira_pb.js";
import type { SentryService } from "../../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import type { SlackService } from "../../../../gen/hookmesh/slack/v1/slack_pb.js";
import { Acknowledgment } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import type { Task } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { githubTarget } from "./github.js";
import { jiraTarget } from "./jira.js";
import { sentryTarget } from "./sentry.js";
import { slackTarget } from "./slack.js";

/**
 * Answers a task where its event came from: one acknowledgment when it starts, edited in place
 * with progress and finally into the answer. Never throws: a reply that fails is logged.
 */
export interface Replier {
  acknowledge(text: string): Promise<void>;
  progress(text: string): Promise<void>;
  /** `final` is false for an attempt that failed and will be retried. */
  finish(text: string, final: boolean): Promise<void>;
}

/** One integration call, for the task's timeline. */
export type CallRecorder = (name: string, detail: string) => void;

export interface ReplyClients {
  github?: Client<typeof GitHubService>;
  slack?: Client<typeof SlackService>;
  jira?: Client<typeof JiraService>;
  sentry?: Client<typeof SentryService>;
}

export interface Posted {
  id: string;
  call?: CallInfo | undefined;
}

/** The few calls a reply needs, against one place of one provider. */
export interface ReplyTarget {
  provider: string;
  createName: string;
  updateName: string;
  create(text: string, idempotencyKey: string): Promise<Posted>;
  update(id: string, text: string): Promise<Posted>;
  /** A 👀 reaction on what triggered the task; absent where the provider has none. */
  react?: { name: string; call(): Promise<Posted> };
}

export type ReplierFactory = (task: Task, record: CallRecorder) => Replier;

export const noopReplier: Replier = {
  acknowledge: async () => {},
  progress: async () => {},
  finish: async () => {},
};

export interface ReplierFactoryOptions {
  clients: ReplyClients;
  logger: Logger;
}

/** Chooses the provider's replier by the task's event; no-op for unknown providers or subjects. */
export function createReplierFactory({ clients, logger }: ReplierFactoryOptions): ReplierFactory {
  return (task, record) => {
    const mode = task.profile?.acknowledgment ?? Acknowledgment.UNSPECIFIED;
    if (mode === Acknowledgment.NONE) return noopReplier;
    const target = targetFor(task, clients);
    if (!target) return noopReplier;
    return new TargetReplier(task, target, mode, record, logger.child({ taskId: task.id, reply: target.provider }));
  };
}

function targetFor(task: Task, clients: ReplyClients): ReplyTarget | undefined {
  const ref = task.event?.subject?.ref;
  switch (task.event?.provider) {
    case Provider.GITHUB:
      return ref?.case === "github" && clients.github ? githubTarget(clients.github, ref.value) : undefined;
    case Provider.SLACK:
      return ref?.case === "slack" && clients.slack ? slackTarget(clients.slack, ref.value) : undefined;
    case Provider.JIRA:
      return ref?.case === "jira" && clients.jira ? jiraTarget(clients.jira, ref.value) : undefined;
    case Provider.SENTRY:
      return ref?.case === "sentry" && clients.sentry ? sentryTarget(clients.sentry, ref.value) : undefined;
    default:
      return undefined;
  }
}

export function callDetail(posted: Posted): string {
  const request = posted.call?.request;
  // The exact request that was not sent, so the timeline shows what would have happened.
  if (posted.call?.dryRun)
    return `dry run: ${request?.method || "POST"} ${request?.url ?? ""} ${request?.body ?? ""}`.trim();
  return posted.call?.replayed ? `${posted.id} (replayed)` : posted.id;
}

class TargetReplier implements Replier {
  private messageId: string | undefined;

  constructor(
    private readonly task: Task,
    private readonly target: ReplyTarget,
    private readonly mode: Acknowledgment,
    private readonly record: CallRecorder,
    private readonly logger: Logger,
  ) {}

  private get ackKey(): string {
    return `${this.task.id}:ack`;
  }

  async acknowledge(text: string): Promise<void> {
    if (this.mode === Acknowledgment.REACTION) {
      const react = this.target.react;
      if (react) await this.call(react.name, () => react.call());
      return;
    }
    // A second attempt (or a restarted worker) gets the first attempt's message back for the same key.
    const posted = await this.call(this.target.createName, () => this.target.create(text, this.ackKey));
    if (posted) this.messageId = posted.id;
  }

  async progress(text: string): Promise<void> {
    if (this.mode !== Acknowledgment.UNSPECIFIED || this.messageId === undefined) return;
    const id = this.messageId;
    await this.call(this.target.updateName, () => this.target.update(id, text));
  }

  async finish(text: string, final: boolean): Promise<void> {
    if (this.mode === Acknowledgment.REACTION) {
      if (final) await this.call(this.target.createName, () => this.target.create(text, `${this.task.id}:answer`));
      return;
    }
    if (this.messageId === undefined) {
      // The acknowledgment failed: post it now, under its key, so that there is still only one.
      const posted = await this.call(this.target.createName, () => this.target.create(text, this.ackKey));
      if (!posted) return;
      this.messageId = posted.id;
    }
    const id = this.messageId;
    // Also when just created: the key may have returned an earlier attempt's message.
    await this.call(this.target.updateName, () => this.target.update(id, text));
  }

  private async call(name: string, fn: () => Promise<Posted>): Promise<Posted | undefined> {
    try {
      const posted = await fn();
      this.record(name, callDetail(posted));
      if (posted.call?.dryRun) this.logger.info({ call: name, url: posted.call.request?.url }, "dry run reply");
      return posted;
    } catch (err) {
      this.logger.warn({ call: name, err }, "could not reply where the event came from; the run goes on");
      return undefined;
    }
  }
}
