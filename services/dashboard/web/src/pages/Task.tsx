import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useState } from "react";
import { Link, useParams } from "react-router";
import type { Task, TaskEvent } from "../../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { OutputStream, TaskStage } from "../../../../../gen/hookmesh/tasks/v1/task_pb.js";
import {
  dashboard,
  errorMessage,
  FINAL_STATES,
  formatCount,
  formatDuration,
  formatTime,
  formatUsd,
  outcomeLabel,
  providerLabel,
  RETRYABLE_STATES,
  stageLabel,
  stateLabel,
} from "../api.js";
import { ColumnHeads, ErrorNotice, PageHeader, StateBadge, StatusNotice } from "../components.js";
import { useAction } from "../hooks.js";

/** How the page follows the task: the watch stream is open, being reopened, or done. */
type Following = "loading" | "live" | "reconnecting" | "ended";

const RECONNECT_DELAY_MS = 1_000;
/** Errors that reconnecting will not mend; any other (UNAVAILABLE, a cut stream) is retried. */
const FATAL_CODES: ReadonlySet<Code> = new Set([
  Code.NotFound,
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
]);

/**
 * Follows one task: its timeline from GetTask, then WatchTask after the last event it holds. A
 * stream that breaks (the dashboard restarting, the network) is opened again after the last
 * event id seen, so no event is missed or shown twice; it ends when the task reaches a final
 * state. `retries` counts the retries asked from this page: after one, the read model may still
 * hold the ended run for a moment, so a final state counts only once the task ran again.
 */
function useTaskTimeline(id: string, retries: number) {
  const [task, setTask] = useState<Task>();
  const [events, setEvents] = useState<TaskEvent[]>([]);
  const [traceUrl, setTraceUrl] = useState("");
  const [following, setFollowing] = useState<Following>("loading");
  const [error, setError] = useState<string>();

  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    const seen = new Set<string>();
    let lastEventId = "";
    let state: Task["state"] | undefined;
    // Whether the run the page waits for has started: always, unless a retry was just asked.
    let ranAgain = retries === 0;
    const ended = () => state !== undefined && FINAL_STATES.has(state) && ranAgain;
    const changed = (task: Task | undefined) => {
      state = task?.state;
      if (state !== undefined && !FINAL_STATES.has(state)) ranAgain = true;
      setTask(task);
    };

    const append = (added: TaskEvent[]) => {
      const fresh = added.filter((event) => !seen.has(event.id));
      for (const event of fresh) {
        seen.add(event.id);
        if (event.kind.case === "stage" && event.kind.value.stage === TaskStage.RETRIED) ranAgain = true;
      }
      if (fresh.length === 0) return;
      lastEventId = fresh.at(-1)!.id;
      setEvents((shown) => [...shown, ...fresh]);
    };
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
      });

    async function follow() {
      setEvents([]);
      setFollowing("loading");
      setError(undefined);
      while (!signal.aborted) {
        try {
          if (state === undefined) {
            const got = await dashboard.getTask({ id }, { signal });
            changed(got.task);
            setTraceUrl(got.traceUrl);
            append(got.events);
            if (ended()) break;
          }
          setFollowing("live");
          setError(undefined);
          for await (const change of dashboard.watchTask({ id, afterEventId: lastEventId }, { signal })) {
            if (change.event) append([change.event]);
            if (change.task) changed(change.task);
          }
          if (ended()) break;
        } catch (reason) {
          if (signal.aborted) return;
          if (FATAL_CODES.has(ConnectError.from(reason).code)) {
            setError(errorMessage(reason));
            setFollowing("ended");
            return;
          }
          setError(`The live timeline was cut off (${errorMessage(reason)}); reconnecting…`);
        }
        if (signal.aborted) return;
        setFollowing("reconnecting");
        await pause(RECONNECT_DELAY_MS);
      }
      if (!signal.aborted) setFollowing("ended");
    }
    void follow();
    return () => controller.abort();
  }, [id, retries]);

  return { task, events, traceUrl, following, error };
}

const STREAM_LABEL: Record<OutputStream, string> = {
  [OutputStream.UNSPECIFIED]: "output",
  [OutputStream.STDOUT]: "stdout",
  [OutputStream.STDERR]: "stderr",
  [OutputStream.AGENT]: "agent",
};

function TimelineEntry({ event }: { event: TaskEvent }) {
  const { kind } = event;
  let title: string;
  let body: string | undefined;
  switch (kind.case) {
    case "stage":
      title = stageLabel(kind.value.stage);
      body = kind.value.detail || undefined;
      break;
    case "output":
      title = `output (${STREAM_LABEL[kind.value.stream]})${kind.value.truncated ? ", truncated" : ""}`;
      body = kind.value.text;
      break;
    case "toolCall":
      title = `tool call: ${kind.value.name}`;
      body = kind.value.detail || undefined;
      break;
    case "usage":
      title = "usage";
      body = `${formatUsd(kind.value.costUsd)}, ${formatCount(kind.value.inputTokens)} tokens in, ${formatCount(kind.value.outputTokens)} out`;
      break;
    default:
      title = "event";
  }
  return (
    <li className={`event event-${kind.case ?? "unknown"}`} data-event-id={event.id}>
      <div className="event-head">
        <span className="event-title">{title}</span>
        <time>{formatTime(event.time)}</time>
        {event.attempt > 0 && <span className="muted">attempt {event.attempt}</span>}
      </div>
      {body !== undefined && <pre>{body}</pre>}
    </li>
  );
}

/** The cost and tokens: the finished attempt's, or while it runs the last usage it reported. */
function usageOf(task: Task | undefined, events: TaskEvent[]) {
  if (task?.result && FINAL_STATES.has(task.state)) return task.result;
  for (let i = events.length - 1; i >= 0; i--) {
    const kind = events[i]!.kind;
    if (kind.case === "usage") return kind.value;
  }
  return task?.result;
}

/** One page per task: another task's id starts afresh (its own timeline, no retries asked). */
export function TaskPage() {
  const { id = "" } = useParams();
  return <TaskView key={id} id={id} />;
}

function TaskView({ id }: { id: string }) {
  const [retries, setRetries] = useState(0);
  const { task, events, traceUrl, following, error } = useTaskTimeline(id, retries);
  const action = useAction();
  const usage = usageOf(task, events);
  const toolCalls = events.filter((event) => event.kind.case === "toolCall");

  const cancel = () =>
    action.run(() => dashboard.cancelTask({ id, reason: "canceled from the dashboard" }), "Cancel requested.");
  const retry = () =>
    action.run(async () => {
      await dashboard.retryTask({ id });
      setRetries((value) => value + 1);
    }, "The task will run again.");

  return (
    <>
      <PageHeader title={`Task ${id}`}>
        <p className={`following ${following}`} role="status" aria-label="Timeline status">
          {following === "live" && "Live"}
          {following === "loading" && "Loading…"}
          {following === "reconnecting" && "Reconnecting…"}
          {following === "ended" && "Ended"}
        </p>
      </PageHeader>
      <p>
        <Link to="/tasks">← All tasks</Link>
      </p>
      <ErrorNotice error={error} />
      {task && (
        <>
          <section aria-labelledby="summary-heading" className="card">
            <h2 id="summary-heading">Summary</h2>
            <dl className="facts">
              <dt>State</dt>
              <dd>
                <StateBadge state={task.state} />
                {task.cancelRequested && !FINAL_STATES.has(task.state) && " (cancel requested)"}
              </dd>
              <dt>Provider</dt>
              <dd>
                {providerLabel(task.event?.provider ?? 0)} {task.event?.eventType}
                {task.event?.action && `.${task.event.action}`}
              </dd>
              <dt>Subject</dt>
              <dd>
                {task.event?.subject?.url ? (
                  <a href={task.event.subject.url}>{task.event.subject.key || task.event.subject.url}</a>
                ) : (
                  (task.event?.subject?.key ?? "—")
                )}
                {task.event?.subject?.title && ` — ${task.event.subject.title}`}
              </dd>
              <dt>Requested by</dt>
              <dd>{task.event?.actor?.login || "—"}</dd>
              <dt>Route</dt>
              <dd className="mono">{task.routeId || "—"}</dd>
              <dt>Created</dt>
              <dd>{formatTime(task.createTime)}</dd>
              <dt>Attempts</dt>
              <dd>
                {task.attempt} of {task.maxAttempts}
                {task.lostLeases > 0 && `, ${task.lostLeases} lost lease${task.lostLeases === 1 ? "" : "s"}`}
              </dd>
              <dt>Cost</dt>
              <dd>{usage ? formatUsd(usage.costUsd) : "—"}</dd>
              <dt>Tokens</dt>
              <dd>{usage ? `${formatCount(usage.inputTokens)} in, ${formatCount(usage.outputTokens)} out` : "—"}</dd>
              {task.result && (
                <>
                  <dt>Outcome</dt>
                  <dd>
                    {outcomeLabel(task.result.outcome)}, exit code {task.result.exitCode}, ran{" "}
                    {formatDuration(task.result.duration)}
                  </dd>
                </>
              )}
              <dt>Trace</dt>
              <dd>
                {traceUrl ? (
                  <a href={traceUrl}>Open the trace</a>
                ) : (
                  "none (no DASHBOARD_TRACE_URL_TEMPLATE, or no trace id)"
                )}
              </dd>
            </dl>
            <div className="actions">
              <button
                type="button"
                onClick={cancel}
                disabled={action.busy || FINAL_STATES.has(task.state) || task.cancelRequested}
              >
                Cancel task
              </button>
              <button type="button" onClick={retry} disabled={action.busy || !RETRYABLE_STATES.has(task.state)}>
                Retry task
              </button>
            </div>
            <ErrorNotice error={action.error} />
            <StatusNotice message={action.message} />
          </section>

          <section aria-labelledby="prompt-heading" className="card">
            <h2 id="prompt-heading">Prompt</h2>
            <pre>{task.prompt || "—"}</pre>
          </section>

          <section aria-labelledby="answer-heading" className="card">
            <h2 id="answer-heading">Answer</h2>
            <pre>{task.result?.answer || (FINAL_STATES.has(task.state) ? "No answer." : "Not yet.")}</pre>
            {task.result?.error && (
              <p className="error">
                <strong>Error:</strong> {task.result.error}
              </p>
            )}
          </section>

          <section aria-labelledby="calls-heading" className="card">
            <h2 id="calls-heading">Replies and requests</h2>
            <p className="muted">
              The calls made on the task's behalf: the replies sent to the provider, or in a dry run the requests that
              would have been sent.
            </p>
            {toolCalls.length === 0 ? (
              <p>None yet.</p>
            ) : (
              <ul aria-label="Replies and requests" className="timeline">
                {toolCalls.map((event) => (
                  <TimelineEntry key={event.id} event={event} />
                ))}
              </ul>
            )}
          </section>

          <section aria-labelledby="transitions-heading" className="card">
            <h2 id="transitions-heading">State changes</h2>
            <table aria-labelledby="transitions-heading">
              <ColumnHeads columns={["State", "Time", "Attempt", "Reason"]} />
              <tbody>
                {task.transitions.map((transition, index) => (
                  // Transitions are append-only, so the position identifies one.
                  // biome-ignore lint/suspicious/noArrayIndexKey: see above
                  <tr key={index}>
                    <td>{stateLabel(transition.state)}</td>
                    <td>{formatTime(transition.time)}</td>
                    <td>{transition.attempt}</td>
                    <td>{transition.reason}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </>
      )}
      <section aria-labelledby="timeline-heading" className="card">
        <h2 id="timeline-heading">Timeline</h2>
        <ol aria-label="Timeline" className="timeline">
          {events.map((event) => (
            <TimelineEntry key={event.id} event={event} />
          ))}
        </ol>
      </section>
    </>
  );
}
