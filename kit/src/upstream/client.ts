import { setTimeout as sleep } from "node:timers/promises";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { SpanKind } from "@opentelemetry/api";
import CircuitBreaker from "opossum";
import { abortAfter } from "../abort.js";
import type { Logger } from "../logger.js";
import type { ProviderMetrics } from "../metrics/provider.js";
import { inSpan, TRACE_ATTRIBUTES } from "../tracing/context.js";

/** A provider API call failed; `code` is what callers of the integration service see. */
export class UpstreamError extends Error {
  override name = "UpstreamError";
  constructor(
    readonly code: Code,
    message: string,
    /** The provider's HTTP status, or 0 when no answer came. */
    readonly status = 0,
  ) {
    super(message);
  }
}

/** Who a call to the provider is made for: their cancellation and deadline, for every request made on their behalf. */
export interface Caller {
  signal?: AbortSignal;
  /** When the caller stops waiting (ms since the epoch); attempts and waits never run past it. */
  deadline?: number;
}

/** The caller of an RPC handler, for the requests the handler makes to the provider. */
export function callerOf(ctx: HandlerContext): Caller {
  const timeoutMs = ctx.timeoutMs();
  return { signal: ctx.signal, ...(timeoutMs !== undefined && { deadline: Date.now() + timeoutMs }) };
}

export interface UpstreamRequest extends Caller {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Path and query, appended to the base URL. */
  path: string;
  /** Sent as JSON. */
  body?: unknown;
  /** Extra headers; the Authorization header comes from `auth`. */
  headers?: Record<string, string>;
  /** The Authorization header's value. Never logged. */
  auth?: string;
  /**
   * Whether repeating the request is harmless (GET, PUT, DELETE, most PATCH). Only such
   * requests are retried after an answer of 5xx or a cut connection; any request is retried
   * after 429 or a rate-limit answer, which the provider sends without acting on it.
   */
  idempotent: boolean;
}

/** A request as a service composes it, before the call adds its Authorization and its caller. */
export type UnsignedRequest = Pick<UpstreamRequest, "method" | "path" | "body" | "idempotent">;

/** A request as the answer's CallInfo describes it, for the task timeline and dry runs (credentials are never part of it). */
export type DescribedRequest = Pick<UpstreamRequest, "method" | "path" | "body">;

export interface UpstreamResponse {
  status: number;
  headers: Headers;
  /** The parsed JSON body, or undefined for an empty body. */
  body: unknown;
}

/** How a provider says "slow down": the wait it asks for, if this answer is one. */
export type RateLimitPolicy = (status: number, headers: Headers, body: unknown) => number | undefined;

/** How one provider speaks: its names and how it says "slow down" and "no". */
export interface ProviderPolicy {
  /** For error messages, logs' `upstream` field and the breaker, e.g. `github`. */
  name: string;
  /** As operators know it, for log lines: `GitHub`. */
  title: string;
  /** The provider's own rate-limit signals beyond 429 + Retry-After. */
  rateLimit?: RateLimitPolicy;
  /** Maps a provider error answer to a code; defaults follow HTTP semantics. */
  errorCode?: (status: number, body: unknown) => Code | undefined;
  /** What a provider error body says, as `: …` for the error message; "" for nothing. */
  errorText?: (body: unknown) => string;
  /** The answer header that says how many requests are left in the rate-limit window. Default `x-ratelimit-remaining`. */
  rateLimitRemainingHeader?: string;
}

/** How long calls may take and how they are retried: set by configuration, or by tests to take milliseconds. */
export interface UpstreamTimings {
  /** Per attempt. Default 10s. */
  attemptTimeoutMs?: number;
  /** Attempts per call, the first included. Default 4. */
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest wait between attempts (the provider asking to slow down, or backoff); beyond it the call fails instead. Default 30s. */
  maxRateLimitWaitMs?: number;
  breaker?: { volumeThreshold?: number; errorThresholdPercentage?: number; resetTimeoutMs?: number };
}

export interface UpstreamClientOptions extends ProviderPolicy, UpstreamTimings {
  baseUrl: string;
  logger: Logger;
  /** Where requests, their statuses and durations and the rate limit left are recorded. */
  metrics?: ProviderMetrics;
}

export const DEFAULT_ATTEMPT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_ATTEMPTS = 4;
const DEFAULT_MAX_WAIT_MS = 30_000;

/**
 * The one way integration services call a provider's REST API: a timeout on every attempt,
 * retries with exponential backoff and full jitter (idempotent requests on 5xx and network
 * errors; any request when the provider asks to slow down, honouring Retry-After and the
 * provider's own rate-limit headers), and a circuit breaker over the upstream that a provider
 * outage opens, so callers get Unavailable at once instead of waiting out timeouts.
 */
export class UpstreamClient {
  private readonly breaker: CircuitBreaker<[UpstreamRequest, AbortSignal], UpstreamResponse>;
  private readonly baseUrl: string;

  constructor(private readonly options: UpstreamClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.breaker = new CircuitBreaker((req: UpstreamRequest, signal: AbortSignal) => this.send(req, signal), {
      name: options.name,
      timeout: false,
      volumeThreshold: options.breaker?.volumeThreshold ?? 5,
      errorThresholdPercentage: options.breaker?.errorThresholdPercentage ?? 50,
      resetTimeout: options.breaker?.resetTimeoutMs ?? 10_000,
      // Only an outage counts (the provider failing or not answering), not a refused request
      // nor a request to slow down.
      errorFilter: (err: unknown) => !(err instanceof RetryableUpstreamError && !err.notActedOn),
      enableSnapshots: false,
      rollingPercentilesEnabled: false,
    });
    const fields = { upstream: options.name };
    this.breaker.on("open", () => options.logger.warn(fields, "upstream circuit opened: failing fast"));
    this.breaker.on("close", () => options.logger.info(fields, "upstream circuit closed"));
  }

  /** The provider's name, as in error messages: `github`. */
  get name(): string {
    return this.options.name;
  }

  /** The provider as operators know it: `GitHub`. */
  get title(): string {
    return this.options.title;
  }

  /**
   * The longest one call can take: every attempt running out its timeout, with the longest
   * wait allowed between attempts. A call holding an idempotency key is bounded by it.
   */
  get longestCallMs(): number {
    const attempts = this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    const attemptMs = this.options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    return attempts * attemptMs + (attempts - 1) * (this.options.maxRateLimitWaitMs ?? DEFAULT_MAX_WAIT_MS);
  }

  /** The URL a request goes to. */
  url(path: string): string {
    return this.baseUrl + path;
  }

  /** The request as it goes out, without credentials: for dry runs and the task timeline. */
  describe(req: DescribedRequest): { method: string; url: string; body: string } {
    return {
      method: req.method,
      url: this.url(req.path),
      body: req.body === undefined ? "" : JSON.stringify(req.body),
    };
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const { logger } = this.options;
    const maxAttempts = this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    const deadline = req.deadline ?? Infinity;
    for (let attempt = 1; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) throw new UpstreamError(Code.DeadlineExceeded, `${this.options.name}: deadline exceeded`);
      const attemptSignal = abortAfter(
        req.signal,
        Math.min(left, this.options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS),
      );
      let wait: number | undefined;
      try {
        return await this.attempt(req, attempt, attemptSignal.signal);
      } catch (err) {
        if (err instanceof Error && CircuitBreaker.isOurError(err)) {
          throw new UpstreamError(Code.Unavailable, `${this.options.name} is failing; circuit open`);
        }
        if (!(err instanceof RetryableUpstreamError)) throw err;
        if (req.signal?.aborted) throw new UpstreamError(Code.Canceled, `${this.options.name}: canceled`);
        if (!(req.idempotent || err.notActedOn) || attempt >= maxAttempts) throw err.final;
        wait = err.waitMs ?? this.backoff(attempt);
        if (wait > (this.options.maxRateLimitWaitMs ?? DEFAULT_MAX_WAIT_MS) || Date.now() + wait >= deadline)
          throw err.final;
        logger.debug(
          { upstream: this.options.name, attempt, waitMs: Math.round(wait), status: err.final.status },
          "retrying upstream call",
        );
      } finally {
        attemptSignal.clear();
      }
      await sleep(wait, undefined, req.signal ? { signal: req.signal } : undefined).catch(() => {
        throw new UpstreamError(Code.Canceled, `${this.options.name}: canceled`);
      });
    }
  }

  shutdown(): void {
    this.breaker.shutdown();
  }

  /** One attempt, through the breaker, in an HTTP client span (its query left out of `url.full`). */
  private attempt(req: UpstreamRequest, attempt: number, signal: AbortSignal): Promise<UpstreamResponse> {
    const url = new URL(this.url(req.path));
    const attributes = {
      "http.request.method": req.method,
      "server.address": url.hostname,
      "url.full": `${url.origin}${url.pathname}`,
      [TRACE_ATTRIBUTES.provider]: this.options.name,
      ...(attempt > 1 && { "http.request.resend_count": attempt - 1 }),
    };
    return inSpan(req.method, { kind: SpanKind.CLIENT, attributes }, async (span) => {
      try {
        const res = await this.breaker.fire(req, signal);
        span.setAttribute("http.response.status_code", res.status);
        return res;
      } catch (err) {
        const failure = err instanceof RetryableUpstreamError ? err.final : err;
        const status = failure instanceof UpstreamError ? failure.status : 0;
        if (status) span.setAttribute("http.response.status_code", status);
        throw err;
      }
    });
  }

  private async send(req: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    const name = this.options.name;
    const started = performance.now();
    const observe = (status: string) => {
      const metrics = this.options.metrics;
      if (!metrics) return;
      metrics.requests.inc({ provider: name, method: req.method, status });
      metrics.duration.observe({ provider: name, method: req.method }, (performance.now() - started) / 1000);
    };
    let res: Response;
    try {
      res = await fetch(this.url(req.path), {
        method: req.method,
        headers: {
          accept: "application/json",
          "user-agent": "hookmesh",
          ...(req.body === undefined ? {} : { "content-type": "application/json; charset=utf-8" }),
          ...(req.auth === undefined ? {} : { authorization: req.auth }),
          ...req.headers,
        },
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        signal,
      });
    } catch (err) {
      const timedOut = signal.aborted && (signal.reason as { name?: string } | undefined)?.name === "TimeoutError";
      const final = timedOut
        ? new UpstreamError(Code.DeadlineExceeded, `${name} did not answer in time`)
        : new UpstreamError(Code.Unavailable, `${name} unreachable: ${causeCode(err)}`);
      observe(timedOut ? "timeout" : "unreachable");
      throw new RetryableUpstreamError(final, false);
    }
    observe(String(res.status));
    const remaining = Number(res.headers.get(this.options.rateLimitRemainingHeader ?? "x-ratelimit-remaining") ?? NaN);
    if (Number.isFinite(remaining)) this.options.metrics?.rateLimitRemaining.set({ provider: name }, remaining);
    const body = await readJson(res);
    const rateLimitWait =
      this.options.rateLimit?.(res.status, res.headers, body) ??
      (res.status === 429 ? (retryAfterMs(res.headers) ?? 1_000) : undefined);
    if (rateLimitWait !== undefined) {
      throw new RetryableUpstreamError(
        new UpstreamError(Code.ResourceExhausted, `${name} rate limit`, res.status),
        true,
        rateLimitWait,
      );
    }
    if (res.status >= 500) {
      throw new RetryableUpstreamError(
        new UpstreamError(Code.Unavailable, `${name} answered ${res.status}`, res.status),
        false,
        retryAfterMs(res.headers),
      );
    }
    if (res.status >= 400) {
      const code = this.options.errorCode?.(res.status, body) ?? httpCode(res.status);
      const text = this.options.errorText?.(body) ?? describe(body);
      throw new UpstreamError(code, `${name} answered ${res.status}${text}`, res.status);
    }
    return { status: res.status, headers: res.headers, body };
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.options.maxDelayMs ?? 5_000, (this.options.baseDelayMs ?? 200) * 2 ** (attempt - 1));
    return Math.random() * ceiling;
  }
}

/** A failed attempt that another may fix; `notActedOn` when the provider refused before acting. */
class RetryableUpstreamError extends Error {
  constructor(
    readonly final: UpstreamError,
    readonly notActedOn: boolean,
    readonly waitMs?: number,
  ) {
    super(final.message);
  }
}

/** `Retry-After` in seconds or as an HTTP date, in milliseconds from now. */
export function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get("retry-after");
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function httpCode(status: number): Code {
  switch (status) {
    case 400:
    case 422:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
    case 410:
      return Code.NotFound;
    case 409:
      return Code.FailedPrecondition;
    default:
      return Code.Unknown;
  }
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text.slice(0, 200);
  }
}

/** The provider's own error message, when it gives one, for the error text. */
function describe(body: unknown): string {
  if (typeof body === "string" && body !== "") return `: ${body}`;
  if (typeof body !== "object" || body === null) return "";
  const record = body as Record<string, unknown>;
  const message = record.message ?? record.error ?? record.errorMessages ?? record.detail;
  if (typeof message === "string") return `: ${message}`;
  if (Array.isArray(message) && message.length > 0) return `: ${message.join("; ")}`;
  return "";
}

function causeCode(err: unknown): string {
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code ?? (err instanceof Error ? err.message : String(err));
}
