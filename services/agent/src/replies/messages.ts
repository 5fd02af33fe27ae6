import type { Task, TaskResult } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { Publication } from "../workspace/publish.js";

/** Most changed files listed in a reply; the pull request has them all. */
const MAX_LISTED_FILES = 50;

/** Longest error text quoted in a reply; the timeline has the rest. */
const MAX_ERROR_CHARS = 300;

export function taskLink(dashboardUrl: string, taskId: string): string {
  return `${dashboardUrl.replace(/\/+$/, "")}/tasks/${encodeURIComponent(taskId)}`;
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function formatCost(usd: number): string {
  return `$${usd.toFixed(usd > 0 && usd < 0.01 ? 4 : 2)}`;
}

function shortError(error: string): string {
  const text = error.trim() || "the agent failed without saying why";
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text;
}

export function acknowledgmentText(task: Task, link: string): string {
  return `⏳ Working on it (task \`${task.id}\`, attempt ${task.attempt}). Follow along: ${link}`;
}

export function progressText(task: Task, link: string, elapsedMs: number, costUsd: number): string {
  return `⏳ Still working (task \`${task.id}\`, attempt ${task.attempt}): ${formatDuration(elapsedMs)} so far, ${formatCost(costUsd)}. ${link}`;
}

export function answerText(result: TaskResult, link: string, durationMs: number, publication?: Publication): string {
  const answer = result.answer.trim() || "(the agent finished without an answer)";
  const changes = publication ? `\n\n${publicationText(publication)}` : "";
  return `${answer}${changes}\n\n---\n✅ Done in ${formatDuration(durationMs)} · ${formatCost(result.costUsd)} · ${link}`;
}

/** Where the run's changes went, and which files they touch. */
export function publicationText(publication: Publication): string {
  const { pullRequest, branch } = publication;
  let head: string;
  if (publication.dryRun)
    head = `🔀 Dry run: the changes were not published (branch \`${branch}\`); the task's timeline has the requests and the diff.`;
  else if (pullRequest) head = `🔀 Pull request #${pullRequest.number}: ${pullRequest.url}`;
  else head = `🔀 Pushed ${publication.commitSha.slice(0, 12)} to \`${branch}\``;
  const listed = publication.changed.slice(0, MAX_LISTED_FILES).map((change) => {
    const path = change.from ? `\`${change.from}\` → \`${change.path}\`` : `\`${change.path}\``;
    return `- ${path} (${change.status})`;
  });
  const more = publication.changed.length - listed.length;
  if (more > 0) listed.push(`- … and ${more} more`);
  return `${head}\n\nFiles changed:\n${listed.join("\n")}`;
}

export function retryingText(task: Task, result: TaskResult, link: string): string {
  return `⚠️ Attempt ${task.attempt} failed: ${shortError(result.error)}\nRetrying automatically (task \`${task.id}\`). ${link}`;
}

export function failureText(
  task: Task,
  result: TaskResult,
  link: string,
  durationMs: number,
  canceled = false,
): string {
  const head = canceled ? "🚫 Canceled" : `❌ Failed: ${shortError(result.error)}`;
  return `${head}\n\nAfter ${formatDuration(durationMs)} · ${formatCost(result.costUsd)} · ${link}\nTo try again: \`hookmesh tasks retry ${task.id}\``;
}
