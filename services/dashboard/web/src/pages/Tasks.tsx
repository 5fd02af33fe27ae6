import { type FormEvent, useEffect } from "react";
import { Link, useSearchParams } from "react-router";
import type { Provider } from "../../../../../gen/hookmesh/events/v1/event_pb.js";
import type { TaskState } from "../../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { dashboard, formatCount, formatTime, formatUsd, PROVIDERS, providerLabel, STATES, stateLabel } from "../api.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader, Pager, StateBadge } from "../components.js";
import { useEvery, useLoad, usePages } from "../hooks.js";

const PAGE_SIZE = 25;
const FILTERS = ["provider", "state", "route", "subject", "text"] as const;

/** The task list, filtered by what the URL's query says, so that a filtered list can be linked. */
export function TasksPage() {
  const [params, setParams] = useSearchParams();
  const pages = usePages();
  const query = params.toString();
  // biome-ignore lint/correctness/useExhaustiveDependencies: new filters start at the first page
  useEffect(() => pages.reset(), [query]);

  const { data, error, loading, reload } = useLoad(
    (signal) =>
      dashboard.listTasks(
        {
          pageSize: PAGE_SIZE,
          pageToken: pages.token,
          provider: Number(params.get("provider") ?? 0) as Provider,
          state: Number(params.get("state") ?? 0) as TaskState,
          routeId: params.get("route") ?? "",
          subject: params.get("subject") ?? "",
          text: params.get("text") ?? "",
        },
        { signal },
      ),
    [query, pages.token],
  );
  // The first page follows new tasks as they come; later pages stay put while being read.
  useEvery(pages.hasPrevious ? 3_600_000 : 5_000, reload);

  function applyFilters(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      const value = String(form.get(name) ?? "").trim();
      if (value !== "" && value !== "0") next.set(name, value);
    }
    setParams(next);
  }

  return (
    <>
      <PageHeader title="Tasks">
        {data && (
          <p aria-live="polite">
            {formatCount(data.totalSize)} {data.totalSize === 1n ? "task" : "tasks"}
          </p>
        )}
      </PageHeader>
      <search aria-label="Filter tasks">
        <form className="filters" onSubmit={applyFilters} key={query}>
          <label>
            Provider
            <select name="provider" defaultValue={params.get("provider") ?? "0"}>
              <option value="0">any</option>
              {PROVIDERS.map((provider) => (
                <option key={provider} value={provider}>
                  {providerLabel(provider)}
                </option>
              ))}
            </select>
          </label>
          <label>
            State
            <select name="state" defaultValue={params.get("state") ?? "0"}>
              <option value="0">any</option>
              {STATES.map((state) => (
                <option key={state} value={state}>
                  {stateLabel(state)}
                </option>
              ))}
            </select>
          </label>
          <label>
            Route
            <input name="route" defaultValue={params.get("route") ?? ""} placeholder="route id" />
          </label>
          <label>
            Subject
            <input name="subject" defaultValue={params.get("subject") ?? ""} placeholder="github:octo/repo#12" />
          </label>
          <label>
            Text
            <input
              name="text"
              type="search"
              defaultValue={params.get("text") ?? ""}
              placeholder="prompt, event or answer"
            />
          </label>
          <button type="submit">Apply filters</button>
          <button type="button" onClick={() => setParams(new URLSearchParams())}>
            Clear
          </button>
        </form>
      </search>
      <ErrorNotice error={error} />
      {!data && <Loading loading={loading} />}
      {data && (
        <table aria-label="Tasks">
          <ColumnHeads
            columns={["Task", "State", "Provider", "Subject", "Route", "Created", "Attempt", { numeric: "Cost" }]}
          />
          <tbody>
            {data.tasks.map((task) => (
              <tr key={task.id}>
                <td>
                  <Link to={`/tasks/${task.id}`} className="mono">
                    {task.id}
                  </Link>
                </td>
                <td>
                  <StateBadge state={task.state} />
                </td>
                <td>{providerLabel(task.event?.provider ?? 0)}</td>
                <td>
                  <span className="mono">{task.event?.subject?.key}</span>
                  {task.event?.subject?.title && <span className="subtitle">{task.event.subject.title}</span>}
                </td>
                <td className="mono">{task.routeId || "—"}</td>
                <td>{formatTime(task.createTime)}</td>
                <td>{task.attempt > 0 ? `${task.attempt} of ${task.maxAttempts}` : "—"}</td>
                <td className="number">{task.result ? formatUsd(task.result.costUsd) : "—"}</td>
              </tr>
            ))}
            {data.tasks.length === 0 && (
              <tr>
                <td colSpan={8}>No task matches these filters.</td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      <Pager
        label="Task pages"
        hasPrevious={pages.hasPrevious}
        nextToken={data?.nextPageToken}
        onPrevious={pages.previous}
        onNext={pages.next}
      />
    </>
  );
}
