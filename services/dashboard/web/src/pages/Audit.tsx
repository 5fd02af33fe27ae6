import { dashboard, formatTime } from "../api.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader, Pager } from "../components.js";
import { useLoad, usePages } from "../hooks.js";

export function AuditPage() {
  const pages = usePages();
  const { data, error, loading } = useLoad(
    (signal) => dashboard.listAuditEntries({ pageSize: 50, pageToken: pages.token }, { signal }),
    [pages.token],
  );
  return (
    <>
      <PageHeader title="Audit" />
      <p className="muted">Every action taken through the dashboard, newest first.</p>
      <ErrorNotice error={error} />
      {!data && <Loading loading={loading} />}
      {data && (
        <table aria-label="Audit log">
          <ColumnHeads columns={["Time", "Who", "Action", "Target", "Outcome"]} />
          <tbody>
            {data.entries.map((entry) => (
              <tr key={entry.id}>
                <td>{formatTime(entry.time)}</td>
                <td>{entry.actor}</td>
                <td>{entry.action}</td>
                <td className="mono">{entry.target}</td>
                <td>
                  <span className={`badge ${entry.outcome === "OK" ? "good" : "bad"}`}>{entry.outcome}</span>
                  {entry.detail && <span className="subtitle">{entry.detail}</span>}
                </td>
              </tr>
            ))}
            {data.entries.length === 0 && (
              <tr>
                <td colSpan={5}>Nothing has been done through the dashboard yet.</td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      <Pager
        label="Audit pages"
        hasPrevious={pages.hasPrevious}
        nextToken={data?.nextPageToken}
        onPrevious={pages.previous}
        onNext={pages.next}
      />
    </>
  );
}
