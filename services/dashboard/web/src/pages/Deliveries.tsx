import { useState } from "react";
import { Link } from "react-router";
import type { Provider } from "../../../../../gen/hookmesh/events/v1/event_pb.js";
import type { DeliveryStatus } from "../../../../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DELIVERY_STATUSES, dashboard, deliveryStatusLabel, formatTime, PROVIDERS, providerLabel } from "../api.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader, Pager, StatusNotice } from "../components.js";
import { useAction, useLoad, usePages } from "../hooks.js";

export function DeliveriesPage() {
  const [provider, setProvider] = useState(0 as Provider);
  const [status, setStatus] = useState(0 as DeliveryStatus);
  const pages = usePages();
  const action = useAction();
  const { data, error, loading, reload } = useLoad(
    (signal) => dashboard.listDeliveries({ pageSize: 50, pageToken: pages.token, provider, status }, { signal }),
    [provider, status, pages.token],
  );

  const redeliver = (id: string) =>
    action.run(async () => {
      const { delivery } = await dashboard.redeliver({ id });
      reload();
      return delivery;
    }, `Delivery ${id} was sent through the pipeline again.`);

  return (
    <>
      <PageHeader title="Deliveries" />
      <div className="filters">
        <label>
          Provider
          <select
            value={provider}
            onChange={(event) => {
              setProvider(Number(event.target.value) as Provider);
              pages.reset();
            }}
          >
            <option value={0}>any</option>
            {PROVIDERS.map((value) => (
              <option key={value} value={value}>
                {providerLabel(value)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select
            value={status}
            onChange={(event) => {
              setStatus(Number(event.target.value) as DeliveryStatus);
              pages.reset();
            }}
          >
            <option value={0}>any</option>
            {DELIVERY_STATUSES.map((value) => (
              <option key={value} value={value}>
                {deliveryStatusLabel(value)}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorNotice error={error ?? action.error} />
      <StatusNotice message={action.message} />
      {!data && <Loading loading={loading} />}
      {data && (
        <table aria-label="Deliveries">
          <ColumnHeads columns={["Received", "Provider", "Event", "Status", "HTTP", "Task", "Redeliveries"]} actions />
          <tbody>
            {data.deliveries.map((delivery) => (
              <tr key={delivery.id}>
                <td>{formatTime(delivery.receiveTime)}</td>
                <td>{providerLabel(delivery.provider)}</td>
                <td>
                  {delivery.eventType}
                  <span className="subtitle mono">{delivery.deliveryId}</span>
                </td>
                <td>
                  {deliveryStatusLabel(delivery.status)}
                  {delivery.reason && <span className="subtitle">{delivery.reason}</span>}
                </td>
                <td>{delivery.httpStatus || "—"}</td>
                <td>
                  {delivery.taskId ? (
                    <Link to={`/tasks/${delivery.taskId}`} className="mono">
                      {delivery.taskId}
                    </Link>
                  ) : (
                    "—"
                  )}
                </td>
                <td>{delivery.redeliveries}</td>
                <td>
                  <button
                    type="button"
                    disabled={action.busy}
                    onClick={() => redeliver(delivery.id)}
                    aria-label={`Redeliver ${delivery.id}`}
                  >
                    Redeliver
                  </button>
                </td>
              </tr>
            ))}
            {data.deliveries.length === 0 && (
              <tr>
                <td colSpan={8}>No deliveries.</td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      <Pager
        label="Delivery pages"
        hasPrevious={pages.hasPrevious}
        nextToken={data?.nextPageToken}
        onPrevious={pages.previous}
        onNext={pages.next}
      />
    </>
  );
}
