import { tmpdir } from "node:os";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import { FileChangeSchema, type GitHubService, PublishTarget } from "../../../../gen/hookmesh/github/v1/github_pb.js";
import { type AgentProfile, PullRequestPublishing } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { OutputEventSchema, OutputStream, ToolCallEventSchema } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { AgentEvent } from "../runners/runner.js";
import { type ChangedPath, commitChanges } from "./commit.js";
import type { Workspace } from "./workspace.js";

/** The github service's limit on one publish's content (PublishChangesRequest.files). */
export const MAX_PUBLISH_BYTES = 3 * 1024 * 1024;
/** Longest commit subject taken from the agent's answer. */
const MAX_SUBJECT_CHARS = 72;
/** Longest pull request body taken from the agent's answer. */
const MAX_BODY_CHARS = 8_000;

export interface PublisherSettings {
  /** The commits' author and committer (AGENT_GIT_AUTHOR_NAME / AGENT_GIT_AUTHOR_EMAIL). */
  author: { name: string; email: string };
  /** Where commits are prepared, outside every sandbox; default the system's temporary directory. */
  scratchRoot?: string;
}

/** Where a run's changes went. */
export interface Publication {
  branch: string;
  commitSha: string;
  pullRequest?: { number: bigint; url: string; created: boolean };
  changed: ChangedPath[];
  dryRun: boolean;
}

export interface PublishRun {
  taskId: string;
  workspace: Workspace;
  profile: AgentProfile;
  /** The agent's final answer: its first line is the commit's subject. */
  answer: string;
  /** The task's page, linked from the pull request. */
  link: string;
  /** Top-level paths of the checkout that are the worker's (the agent's HOME). */
  excluded: readonly string[];
  onEvent(event: AgentEvent): void;
  signal?: AbortSignal;
}

/** Publishing failed; `retryable` when another attempt may succeed (the github service was unreachable). */
export class PublishError extends Error {
  override name = "PublishError";
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/** Codes after which a retry of the whole task may publish: the service or GitHub was unreachable. */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Internal, Code.Unknown]);

/**
 * After a successful run: commits the agent's changes in the worker (see commit.ts) and has
 * the github service publish them. The worker holds no credential that can write: it sends the
 * files, and the service makes the commit, the branch and the pull request with its own.
 * Nothing changed: no commit, no pull request.
 */
export class Publisher {
  constructor(
    private readonly deps: { github: Client<typeof GitHubService>; settings: PublisherSettings; logger: Logger },
  ) {}

  async publish(run: PublishRun): Promise<Publication | undefined> {
    const { settings } = this.deps;
    const subject = commitSubject(run.answer, run.taskId);
    const commitStarted = Date.now();
    let changes: Awaited<ReturnType<typeof commitChanges>>;
    try {
      changes = await commitChanges({
        workspace: run.workspace,
        author: settings.author,
        message: `${subject}\n\nTask: ${run.taskId}\n${run.link}\n`,
        excluded: run.excluded,
        scratchRoot: settings.scratchRoot ?? tmpdir(),
        maxBytes: MAX_PUBLISH_BYTES,
        ...(run.signal && { signal: run.signal }),
      });
    } catch (err) {
      throw new PublishError(`could not commit the agent's changes: ${message(err)}`, false);
    }
    const commitMs = Date.now() - commitStarted;
    if (!changes) {
      toolCall(run, "git.commit", `no changes: nothing to publish (${commitMs} ms)`);
      return undefined;
    }
    toolCall(
      run,
      "git.commit",
      `${changes.commitSha.slice(0, 12)} "${subject}": ${changes.changed.length} file(s) in ${commitMs} ms`,
    );
    run.onEvent({
      case: "output",
      value: create(OutputEventSchema, { stream: OutputStream.AGENT, text: changes.diff }),
    });

    const { workspace } = run;
    const sameBranch =
      workspace.pullRequest !== undefined && run.profile.pullRequestPublishing === PullRequestPublishing.SAME_BRANCH;
    const branch = sameBranch ? workspace.pullRequest!.headRef : branchFor(run.taskId);
    const publishStarted = Date.now();
    try {
      const res = await this.deps.github.publishChanges(
        {
          repository: workspace.repository,
          baseSha: workspace.baseSha,
          branch,
          target: sameBranch ? PublishTarget.SAME_BRANCH : PublishTarget.NEW_BRANCH,
          pullRequestBase: workspace.pullRequest?.headRef ?? workspace.baseRef,
          title: subject,
          body: pullRequestBody(run),
          commitMessage: `${subject}\n\nTask: ${run.taskId}\n${run.link}\n`,
          author: settings.author,
          files: changes.files.map((file) =>
            create(FileChangeSchema, {
              path: file.path,
              mode: file.mode,
              change: file.content ? { case: "content", value: file.content } : { case: "deleted", value: true },
            }),
          ),
        },
        { ...(run.signal && { signal: run.signal }) },
      );
      const ms = Date.now() - publishStarted;
      const pull = res.pullRequest;
      const where = pull
        ? `pull request #${pull.number} ${pull.htmlUrl} (${res.created ? "opened" : "updated"})`
        : `branch ${res.branch}`;
      if (res.dryRun) {
        const requests = res.requests.map((r) => `${r.method} ${r.url} ${r.body}`.trim()).join("\n");
        toolCall(
          run,
          "github.PublishChanges",
          `dry run: ${res.requests.length} requests not sent (${ms} ms)\n${requests}`,
        );
      } else {
        toolCall(run, "github.PublishChanges", `${where}, commit ${res.commitSha.slice(0, 12)} in ${ms} ms`);
      }
      return {
        branch: res.branch,
        commitSha: res.commitSha,
        ...(pull && { pullRequest: { number: pull.number, url: pull.htmlUrl, created: res.created } }),
        changed: changes.changed,
        dryRun: res.dryRun,
      };
    } catch (err) {
      const error = ConnectError.from(err);
      toolCall(run, "github.PublishChanges", `failed: ${Code[error.code]} ${error.rawMessage}`);
      throw new PublishError(`could not publish the changes: ${error.rawMessage}`, TRANSIENT.has(error.code));
    }
  }
}

/** hookmesh's branch for a task: one per task, so that every attempt lands on it. */
export function branchFor(taskId: string): string {
  // Only what every ref name takes: no dots (no "..", no ".lock"), no slashes.
  return `hookmesh/${taskId.replace(/[^A-Za-z0-9_-]+/g, "-")}`;
}

/** The first line of the agent's answer, trimmed, as a commit subject. */
export function commitSubject(answer: string, taskId: string): string {
  const line =
    answer
      .split("\n")
      .map((text) => text.trim())
      .find((text) => text !== "") ?? "";
  const subject = line.replace(/^#+\s*/, "");
  if (subject === "") return `hookmesh: changes for task ${taskId}`;
  return subject.length > MAX_SUBJECT_CHARS ? `${subject.slice(0, MAX_SUBJECT_CHARS - 1)}…` : subject;
}

function pullRequestBody(run: PublishRun): string {
  const answer = run.answer.trim();
  const text = answer.length > MAX_BODY_CHARS ? `${answer.slice(0, MAX_BODY_CHARS)}…` : answer;
  return `${text}\n\n---\nMade by hookmesh for task \`${run.taskId}\`: ${run.link}`;
}

function toolCall(run: PublishRun, name: string, detail: string): void {
  run.onEvent({ case: "toolCall", value: create(ToolCallEventSchema, { name, detail }) });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
