import { ConfigError, type Env, envBool, envNumber, envString, envUrl } from "../config.js";

/** The OTLP encodings the exporter speaks; both over HTTP (port 4318 by convention). */
export type OtlpProtocol = "http/protobuf" | "http/json";

/** `OTEL_TRACES_SAMPLER`'s values, as the OpenTelemetry specification names them. */
const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export interface TracingConfig {
  /** `service.name` of every span (OTEL_SERVICE_NAME, by default the service's own name). */
  serviceName: string;
  /** Further resource attributes (OTEL_RESOURCE_ATTRIBUTES). */
  resourceAttributes: Record<string, string>;
  /** Where spans go; none when no endpoint is set, the SDK is disabled or the exporter is `none`. */
  exporter?: { url: string; protocol: OtlpProtocol };
  sampler: { name: SamplerName; ratio: number };
}

/**
 * Tracing as the standard `OTEL_*` variables set it. Spans are exported only when an endpoint
 * is named (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, used as given, or OTEL_EXPORTER_OTLP_ENDPOINT,
 * to which `/v1/traces` is appended), so that a mesh nobody collects traces from spends nothing
 * on spans; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn the export off whatever
 * else is set. Only the OTLP/HTTP encodings are built in: `grpc` is refused by name rather than
 * silently sent nowhere.
 */
export function loadTracingConfig(service: string, env: Env): TracingConfig {
  const disabled = envBool(env, "OTEL_SDK_DISABLED", false);
  const exporterName = envString(env, "OTEL_TRACES_EXPORTER", "otlp");
  if (exporterName !== "otlp" && exporterName !== "none") {
    throw new ConfigError("OTEL_TRACES_EXPORTER", `expected otlp or none, got "${exporterName}"`);
  }
  const protocolVariable = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim()
    ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = envString(env, protocolVariable, "http/protobuf");
  if (protocol !== "http/protobuf" && protocol !== "http/json") {
    throw new ConfigError(
      protocolVariable,
      `expected http/protobuf or http/json, got "${protocol}" (point it at the collector's OTLP/HTTP port, 4318)`,
    );
  }
  const url = tracesUrl(env);
  const samplerName = envString(env, "OTEL_TRACES_SAMPLER", "parentbased_always_on");
  if (!(SAMPLERS as readonly string[]).includes(samplerName)) {
    throw new ConfigError("OTEL_TRACES_SAMPLER", `expected one of ${SAMPLERS.join(", ")}, got "${samplerName}"`);
  }
  return {
    serviceName: envString(env, "OTEL_SERVICE_NAME", service),
    resourceAttributes: resourceAttributes(env),
    ...(url !== undefined && !disabled && exporterName === "otlp" && { exporter: { url, protocol } }),
    sampler: {
      name: samplerName as SamplerName,
      ratio: envNumber(env, "OTEL_TRACES_SAMPLER_ARG", 1, { min: 0, max: 1 }),
    },
  };
}

function tracesUrl(env: Env): string | undefined {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim()) return envUrl(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim()) return undefined;
  return `${envUrl(env, "OTEL_EXPORTER_OTLP_ENDPOINT", "")}/v1/traces`;
}

/** `key1=value1,key2=value2`, values percent-encoded, as the specification writes them. */
function resourceAttributes(env: Env): Record<string, string> {
  const raw = envString(env, "OTEL_RESOURCE_ATTRIBUTES", "");
  const attributes: Record<string, string> = {};
  for (const pair of raw.split(",")) {
    if (pair.trim() === "") continue;
    const at = pair.indexOf("=");
    if (at <= 0) throw new ConfigError("OTEL_RESOURCE_ATTRIBUTES", `expected key=value, got "${pair.trim()}"`);
    try {
      attributes[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      throw new ConfigError("OTEL_RESOURCE_ATTRIBUTES", `malformed percent-encoding in "${pair.trim()}"`);
    }
  }
  return attributes;
}
