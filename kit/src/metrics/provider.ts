import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** What an integration service's calls to its provider's API are measured by. */
export interface ProviderMetrics {
  /** Every attempt, by provider, HTTP method and the answer's status (`timeout`, `unreachable` when none came). */
  requests: Counter<"provider" | "method" | "status">;
  duration: Histogram<"provider" | "method">;
  /** What the provider's last answer said is left of its rate limit, for providers that say. */
  rateLimitRemaining: Gauge<"provider">;
}

/** Seconds: provider APIs answer in tens to hundreds of milliseconds, and are cut at the attempt timeout (10 s). */
const PROVIDER_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const byRegistry = new WeakMap<Registry, ProviderMetrics>();

/** The provider call metrics on `registry`, made on first use (a registry takes each name once). */
export function providerMetrics(registry: Registry): ProviderMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const metrics: ProviderMetrics = {
    requests: new Counter({
      name: "hookmesh_provider_requests_total",
      help: "Requests to a provider's API (each attempt), by provider, HTTP method and status.",
      labelNames: ["provider", "method", "status"],
      registers,
    }),
    duration: new Histogram({
      name: "hookmesh_provider_request_duration_seconds",
      help: "Time of one request to a provider's API, by provider and HTTP method.",
      labelNames: ["provider", "method"],
      buckets: PROVIDER_BUCKETS,
      registers,
    }),
    rateLimitRemaining: new Gauge({
      name: "hookmesh_provider_rate_limit_remaining",
      help: "Requests left in the provider's rate-limit window, as its last answer said.",
      labelNames: ["provider"],
      registers,
    }),
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
