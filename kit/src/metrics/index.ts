// Services build their own metric families on their registry with these, from the one pinned prom-client.
export { Counter, Gauge, Histogram, type Registry } from "prom-client";
export { type ProviderMetrics, providerMetrics } from "./provider.js";
export { createServiceMetrics, type ServiceMetrics } from "./registry.js";
export { clientMetricsInterceptor, createRpcMetrics, type RpcMetrics, serverMetricsInterceptor } from "./rpc.js";
export { type GaugeSample, type ScrapedGaugeOptions, scrapedGauge } from "./scraped.js";
