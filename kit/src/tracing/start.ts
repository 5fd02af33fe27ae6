import { context, DiagLogLevel, diag, propagation, type TextMapPropagator, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import type { Env } from "../config.js";
import type { Logger } from "../logger.js";
import { loadTracingConfig, type TracingConfig } from "./config.js";

/** The process's tracing, as `startTracing` set it up. */
export interface Tracing {
  /** Whether spans are recorded and exported; otherwise only the context propagates. */
  readonly exporting: boolean;
  /**
   * Exports the spans still buffered (waiting at most OTEL_EXPORTER_OTLP_TIMEOUT, 10s, for the
   * collector), then unregisters everything `startTracing` registered; never rejects.
   */
  shutdown(): Promise<void>;
}

/**
 * Sets up the process's tracing from the standard `OTEL_*` variables (see `loadTracingConfig`);
 * `runMain` calls it for every service. The context always propagates: each RPC and webhook
 * continues its caller's `traceparent` and passes it on, request ids with it, and log lines
 * name the trace. Spans are recorded only with an exporter configured: without one no tracer
 * provider is registered, so a span costs what the API's no-op one does, carrying its parent's
 * ids and nothing else. The OpenTelemetry globals are the process's: one call per process, and
 * `shutdown` before another (tests).
 */
export function startTracing(service: string, env: Env, logger?: Logger): Tracing {
  const config = loadTracingConfig(service, env);
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(PROPAGATOR);
  if (logger) diag.setLogger(diagLogger(logger), DiagLogLevel.WARN);
  let provider: NodeTracerProvider | undefined;
  if (config.exporter) {
    provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ ...config.resourceAttributes, [ATTR_SERVICE_NAME]: config.serviceName }),
      sampler: samplerOf(config.sampler),
      spanProcessors: [new BatchSpanProcessor(exporterOf(config.exporter))],
    });
    trace.setGlobalTracerProvider(provider);
    logger?.info({ endpoint: config.exporter.url, protocol: config.exporter.protocol }, "exporting traces");
  }
  return {
    exporting: provider !== undefined,
    async shutdown() {
      try {
        await provider?.shutdown();
      } catch (err) {
        // The collector's outage must not fail a service's stop: the spans are lost, and said so.
        logger?.warn({ err: err instanceof Error ? err.message : String(err) }, "could not export the last spans");
      } finally {
        trace.disable();
        propagation.disable();
        context.disable();
        diag.disable();
      }
    },
  };
}

/** W3C trace context, and baggage, which a caller may send and the mesh passes on untouched. */
const PROPAGATOR: TextMapPropagator = new CompositePropagator({
  propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
});

function exporterOf({ url, protocol }: NonNullable<TracingConfig["exporter"]>) {
  // Headers, timeout and compression come from OTEL_EXPORTER_OTLP_(TRACES_)HEADERS etc., which
  // the exporter reads itself.
  return protocol === "http/json" ? new OtlpJsonExporter({ url }) : new OtlpProtobufExporter({ url });
}

function samplerOf({ name, ratio }: TracingConfig["sampler"]): Sampler {
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

/** The SDK's own warnings (an export the collector refused or never answered), as the service's log lines. */
function diagLogger(logger: Logger) {
  const log = logger.child({ component: "opentelemetry" });
  const line =
    (level: "error" | "warn" | "info" | "debug") =>
    (message: string, ...args: unknown[]) =>
      log[level]({ ...(args.length > 0 && { detail: args.map(String).join(" ") }) }, message);
  return { error: line("error"), warn: line("warn"), info: line("info"), debug: line("debug"), verbose: line("debug") };
}
