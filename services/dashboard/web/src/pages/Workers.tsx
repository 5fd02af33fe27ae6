import { Link } from "react-router";
import { dashboard, formatTime, formatUsd } from "../api.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader, StatusNotice } from "../components.js";
import { useAction, useEvery, useLoad } from "../hooks.js";

export function WorkersPage() {
  const { data, error, loading, reload } = useLoad((signal) => dashboard.listWorkers({}, { signal }), []);
  useEvery(5_000, reload);
  const action = useAction();

  const drain = (id: string) =>
    action.run(async () => {
      const { runsInProgress } = await dashboard.drainWorker({ id });
      reload();
      return runsInProgress;
    }, `Worker ${id} is draining: it finishes its runs and takes no more.`);

  return (
    <>
      <PageHeader title="Workers" />
      <ErrorNotice error={error ?? action.error} />
      <StatusNotice message={action.message} />
      {!data && <Loading loading={loading} />}
      {data?.workers.length === 0 && <p>No worker is known to the dashboard.</p>}
      {data?.workers.map((worker) => (
        <section key={worker.id} className="card" aria-label={`Worker ${worker.id}`}>
          <header className="card-header">
            <h2 className="mono">{worker.id}</h2>
            <span className={`badge ${worker.error ? "bad" : worker.draining ? "muted" : "good"}`}>
              {worker.error ? "unreachable" : worker.draining ? "draining" : "taking work"}
            </span>
            <button
              type="button"
              onClick={() => drain(worker.id)}
              disabled={action.busy || worker.draining || worker.error !== ""}
              aria-label={`Drain ${worker.id}`}
            >
              Drain
            </button>
          </header>
          <p className="muted">
            {worker.url} · {worker.runs.length} of {worker.concurrency} slots busy
          </p>
          {worker.error && <p className="error">{worker.error}</p>}
          {worker.runs.length > 0 && (
            <table aria-label={`Runs of ${worker.id}`}>
              <ColumnHeads columns={["Task", "Attempt", "Runner", "Started", { numeric: "Cost so far" }]} />
              <tbody>
                {worker.runs.map((run) => (
                  <tr key={`${run.taskId}:${run.attempt}`}>
                    <td>
                      <Link to={`/tasks/${run.taskId}`} className="mono">
                        {run.taskId}
                      </Link>
                    </td>
                    <td>{run.attempt}</td>
                    <td>{run.runner}</td>
                    <td>{formatTime(run.startTime)}</td>
                    <td className="number">{formatUsd(run.costUsd)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      ))}
    </>
  );
}
