import { dashboard, formatDuration } from "../api.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader } from "../components.js";
import { useEvery, useLoad } from "../hooks.js";

const STATUS_CLASS: Record<string, string> = { SERVING: "good", NOT_SERVING: "bad", UNREACHABLE: "bad" };
const BREAKER_CLASS: Record<string, string> = { closed: "good", "half-open": "busy", open: "bad" };

export function HealthPage() {
  const { data, error, loading, reload } = useLoad((signal) => dashboard.getMeshHealth({}, { signal }), []);
  useEvery(5_000, reload);
  return (
    <>
      <PageHeader title="Health" />
      <ErrorNotice error={error} />
      {!data && <Loading loading={loading} />}
      {data && (
        <>
          <section className="card" aria-labelledby="services-heading">
            <h2 id="services-heading">Services</h2>
            <table aria-labelledby="services-heading">
              <ColumnHeads columns={["Service", "Status", "Address", { numeric: "Check took" }, "Error"]} />
              <tbody>
                {data.services.map((service) => (
                  <tr key={service.name}>
                    <th scope="row">{service.name}</th>
                    <td>
                      <span className={`badge ${STATUS_CLASS[service.status] ?? ""}`}>{service.status}</span>
                    </td>
                    <td className="mono">{service.url}</td>
                    <td className="number">{formatDuration(service.latency)}</td>
                    <td>{service.error}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          <section className="card" aria-labelledby="breakers-heading">
            <h2 id="breakers-heading">Circuit breakers</h2>
            {data.breakers.length === 0 ? (
              <p className="muted">No breaker has been used yet.</p>
            ) : (
              <table aria-labelledby="breakers-heading">
                <ColumnHeads columns={["Downstream", "State"]} />
                <tbody>
                  {data.breakers.map((breaker) => (
                    <tr key={breaker.downstream}>
                      <th scope="row" className="mono">
                        {breaker.downstream}
                      </th>
                      <td>
                        <span className={`badge ${BREAKER_CLASS[breaker.state] ?? ""}`}>{breaker.state}</span>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      )}
    </>
  );
}
