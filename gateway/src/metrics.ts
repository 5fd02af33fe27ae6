import { Counter, type Logger, type ServiceMetrics, scrapedGauge } from "@hookmesh/kit";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import type { Outbox } from "./outbox.js";

/** What became of a webhook request at the edge. */
export type DeliveryOutcome =
  /** Already seen: no new task. */
  | "duplicate"
  /**
   * Kept in the outbox, which every new delivery is before its answer: the forwarder submits it
   * to tasks behind it (tasks counts what it became, hookmesh_tasks_submitted_total).
   */
  | "queued"
  /** Answered at the edge (a Slack URL check, a ping). */
  | "answered"
  /** Refused; `reason` says why. */
  | "rejected";

/** Records the outcome of one webhook request. */
export type DeliveryObserver = (provider: Provider | undefined, outcome: DeliveryOutcome, httpStatus?: number) => void;

/** Why a refused request was refused, from its status: few enough values to be a label. */
const REJECTION_REASONS: Readonly<Record<number, string>> = {
  400: "invalid",
  401: "signature",
  404: "not_found",
  413: "too_large",
  415: "content_type",
  429: "rate_limited",
  503: "unavailable",
};

/**
 * The gateway's own metrics on its registry: deliveries by provider and outcome, and the outbox,
 * whose length and oldest entry's age are read from Redis when Prometheus scrapes.
 */
export function gatewayMetrics(metrics: ServiceMetrics, outbox: Outbox, logger: Logger): DeliveryObserver {
  const { registry } = metrics;
  const deliveries = new Counter({
    name: "hookmesh_gateway_deliveries_total",
    help: "Webhook requests by provider and outcome (queued in the outbox, duplicate, answered, rejected), and for rejections the reason.",
    labelNames: ["provider", "outcome", "reason"],
    registers: [registry],
  });
  scrapedGauge({
    name: "hookmesh_gateway_outbox_length",
    help: "Verified deliveries in the outbox, waiting for the tasks service.",
    registry,
    logger,
    read: async () => [{ value: await outbox.length() }],
  });
  scrapedGauge({
    name: "hookmesh_gateway_outbox_oldest_age_seconds",
    help: "How long the oldest delivery in the outbox has waited; 0 when it is empty.",
    registry,
    logger,
    read: async () => {
      const oldest = await outbox.oldest();
      return [{ value: oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000) }];
    },
  });
  return (provider, outcome, httpStatus) => {
    const reason = outcome === "rejected" ? (REJECTION_REASONS[httpStatus ?? 0] ?? `http_${httpStatus}`) : "";
    deliveries.inc({ provider: providerLabel(provider), outcome, reason });
  };
}

function providerLabel(provider: Provider | undefined): string {
  return provider === undefined || provider === Provider.UNSPECIFIED ? "unknown" : Provider[provider].toLowerCase();
}
