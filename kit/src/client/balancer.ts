import { lookup as dnsLookup } from "node:dns/promises";
import type * as http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../../gen/health/v1/health_pb.js";
import type { Logger } from "../logger.js";
import type { RpcMetrics } from "../metrics/rpc.js";
import { failedBeforeSending } from "./codes.js";
import { type EndpointCondition, EndpointRecord, type OutlierOptions, RoundRobinPicker } from "./outlier.js";
import { endpointOrigin, type PeerTarget, targetText } from "./peer.js";
import type { GuardedSessionManager } from "./session-manager.js";

/** Every address of a host name, as `dns.promises.lookup(host, { all: true })` gives them. */
export type LookupAll = (host: string) => Promise<string[]>;

/** How a downstream of several endpoints is balanced. */
export interface BalancingOptions extends OutlierOptions {
  /** How often `dns:///` targets are resolved again. Default 30s. */
  resolveIntervalMs?: number;
  /** Resolves a `dns:///` target's host; the system resolver (getaddrinfo) by default. */
  lookup?: LookupAll;
  /** Upper bound of the wait before a failed or ended health watch is opened again. Default 5s. */
  healthRetryMaxMs?: number;
}

/** One endpoint of a balanced downstream, as `ClientFactory.endpoints()` reports it. */
export interface EndpointStatus {
  downstream: string;
  /** The endpoint's origin, e.g. `https://10.0.0.5:50051`. */
  endpoint: string;
  state: EndpointCondition;
  /** Times ejected so far (the current ejection's length is this many base ejection times). */
  ejections: number;
  /** When the current ejection ends, if it is ejected. */
  ejectedUntil?: Date;
}

interface Endpoint {
  readonly record: EndpointRecord;
  readonly manager: GuardedSessionManager;
  /** Ends its health watch for good. */
  readonly stop: AbortController;
  /** Ends the current Watch stream only, to open another (over a renewed connection). */
  stream: AbortController;
  returnTimer?: NodeJS.Timeout;
}

const ENDPOINT_STATES: readonly EndpointCondition[] = ["serving", "not_serving", "ejected"];
/** The least time between two resolutions asked for by failures (an ejection, a refused connection). */
const MIN_RESOLVE_GAP_MS = 1_000;
const HEALTH_RETRY_BASE_MS = 250;

export interface BalancerDeps {
  downstream: string;
  targets: readonly PeerTarget[];
  /** The transport's base URL: calls come with it, and go out with an endpoint's origin instead. */
  baseUrl: string;
  /** A session manager (one HTTP/2 connection, the downstream's TLS identity) for an endpoint's origin. */
  sessionManager(origin: string): GuardedSessionManager;
  options: Required<OutlierOptions> & Required<Omit<BalancingOptions, keyof OutlierOptions>>;
  logger: Logger;
  metrics?: RpcMetrics;
}

/**
 * The endpoints of one downstream and the choice among them. Each endpoint has its own HTTP/2
 * connection, followed by a grpc.health.v1 Watch over that connection; each call is sent to the
 * next eligible endpoint in turn, and its result feeds the endpoint's outlier record. `dns:///`
 * targets are resolved again every `resolveIntervalMs`, and soon after a failure.
 */
export class Balancer {
  private readonly endpoints = new Map<string, Endpoint>();
  /** The endpoints in the order the picker walks them. */
  private rotation: Endpoint[] = [];
  /** Their outlier records, in the same order, as the picker takes them. */
  private rotationRecords: EndpointRecord[] = [];
  private readonly records = new Map<EndpointRecord, Endpoint>();
  private readonly picker = new RoundRobinPicker();
  /** The origins of each `dns:///` target's last good resolution. */
  private readonly resolved = new Map<string, string[]>();
  private readonly dnsTargets: Extract<PeerTarget, { kind: "dns" }>[];
  private readonly staticOrigins: string[];
  private readonly now = Date.now;
  private readonly logger: Logger;
  private resolveTimer?: NodeJS.Timeout;
  private soonTimer?: NodeJS.Timeout;
  private lastResolveMs = Number.NEGATIVE_INFINITY;
  /** Settles when every `dns:///` target has been resolved once. */
  private readonly firstResolution: Promise<void>;
  private closed = false;

  constructor(private readonly deps: BalancerDeps) {
    this.logger = deps.logger.child({ downstream: deps.downstream });
    this.staticOrigins = deps.targets.flatMap((t) => (t.kind === "url" ? [t.origin] : []));
    this.dnsTargets = deps.targets.flatMap((t) => (t.kind === "dns" ? [t] : []));
    this.sync();
    this.firstResolution = this.resolveAll();
    if (this.dnsTargets.length > 0) {
      this.resolveTimer = setInterval(() => void this.resolveAll(), deps.options.resolveIntervalMs).unref();
    }
  }

  /** Innermost of the downstream's interceptors: sends each attempt to an endpoint of its own. */
  interceptor(): Interceptor {
    const prefixLength = this.deps.baseUrl.length;
    return (next) => async (req) => {
      const endpoint = this.pick() ?? (await this.firstEndpoint());
      try {
        const res = await next({ ...req, url: endpoint.record.origin + req.url.slice(prefixLength) });
        endpoint.record.recordSuccess(this.now());
        return res;
      } catch (err) {
        const error = lostConnection(ConnectError.from(err), req.signal, endpoint.record.origin);
        this.observeFailure(endpoint, error);
        throw error;
      }
    };
  }

  /** The session manager of the endpoint an attempt was sent to (by its URL's origin). */
  sessionManager(url: string): GuardedSessionManager {
    const origin = url.slice(0, url.indexOf("/", url.indexOf("//") + 2));
    const endpoint = this.endpoints.get(origin);
    // The pick and this look-up run in one synchronous step, so the endpoint cannot have left.
    if (!endpoint) throw new ConnectError(`${origin} is no endpoint of ${this.deps.downstream}`, Code.Internal);
    return endpoint.manager;
  }

  status(): EndpointStatus[] {
    const now = this.now();
    return this.rotation.map(({ record }) => ({
      downstream: this.deps.downstream,
      endpoint: record.origin,
      state: record.condition(now),
      ejections: record.ejections,
      ...(record.condition(now) === "ejected" && { ejectedUntil: new Date(record.ejectedUntil) }),
    }));
  }

  /** New TLS options for every endpoint's connection (a rotated certificate); watches move to the new ones. */
  renew(sessionOptions: http2.SecureClientSessionOptions): void {
    for (const endpoint of this.rotation) {
      endpoint.manager.renew(sessionOptions);
      endpoint.stream.abort();
    }
  }

  /** Ends health watches, timers and resolutions. Connections are left to their idle timeout. */
  close(): void {
    this.closed = true;
    clearInterval(this.resolveTimer);
    clearTimeout(this.soonTimer);
    for (const endpoint of this.rotation) this.stopFollowing(endpoint);
  }

  private pick(): Endpoint | undefined {
    const record = this.picker.pick(this.rotationRecords, this.now());
    return record && this.records.get(record);
  }

  /** The first pick, once `dns:///` targets have been resolved; Unavailable if they named no address. */
  private async firstEndpoint(): Promise<Endpoint> {
    await this.firstResolution;
    const endpoint = this.pick();
    if (endpoint) return endpoint;
    this.resolveSoon();
    throw new ConnectError(`${this.deps.downstream}: no address to call`, Code.Unavailable);
  }

  private observeFailure(endpoint: Endpoint, err: ConnectError): void {
    const now = this.now();
    // The caller's cancel or deadline says nothing of the endpoint.
    if (err.code === Code.Canceled || err.code === Code.DeadlineExceeded) return;
    if (err.code !== Code.Unavailable) {
      endpoint.record.recordSuccess(now);
      return;
    }
    if (failedBeforeSending(err)) this.resolveSoon();
    const ejectedForMs = endpoint.record.recordOutage(now);
    if (ejectedForMs === undefined) return;
    this.logger.warn(
      { endpoint: endpoint.record.origin, ejections: endpoint.record.ejections, ejectedForMs, err: err.message },
      "endpoint ejected after outage results in a row",
    );
    this.deps.metrics?.clientEjections.inc({ downstream: this.deps.downstream, endpoint: endpoint.record.origin });
    clearTimeout(endpoint.returnTimer);
    endpoint.returnTimer = setTimeout(() => this.noteReturn(endpoint), ejectedForMs).unref();
    this.updateGauge();
    this.resolveSoon();
  }

  private noteReturn(endpoint: Endpoint): void {
    const now = this.now();
    if (now < endpoint.record.ejectedUntil) {
      // A timer may fire a millisecond before the clock it is compared with says it is due.
      endpoint.returnTimer = setTimeout(() => this.noteReturn(endpoint), endpoint.record.ejectedUntil - now).unref();
      return;
    }
    if (!endpoint.record.noteReturn(now)) return;
    const serving = endpoint.record.serving;
    this.logger.info(
      { endpoint: endpoint.record.origin, serving },
      serving ? "endpoint back in rotation" : "endpoint's ejection over; it returns when its health says SERVING",
    );
    this.updateGauge();
  }

  private setServing(endpoint: Endpoint, serving: boolean, reason: string): void {
    if (endpoint.record.serving === serving) return;
    endpoint.record.serving = serving;
    if (serving) this.logger.info({ endpoint: endpoint.record.origin }, "endpoint serving");
    else this.logger.warn({ endpoint: endpoint.record.origin, reason }, "endpoint not serving");
    this.updateGauge();
  }

  /** Follows an endpoint's health over its own connection, until it leaves or the factory closes. */
  private async follow(endpoint: Endpoint): Promise<void> {
    const transport = createGrpcTransport({ baseUrl: endpoint.record.origin, sessionManager: endpoint.manager });
    const health = createClient(Health, transport);
    const { signal } = endpoint.stop;
    for (let failures = 0; !signal.aborted; ) {
      const stream = endpoint.stream;
      try {
        for await (const res of health.watch({ service: "" }, { signal: AbortSignal.any([signal, stream.signal]) })) {
          failures = 0;
          this.setServing(endpoint, res.status === ServingStatus.SERVING, ServingStatus[res.status]);
        }
        if (signal.aborted) return;
        this.setServing(endpoint, false, "health watch ended");
      } catch (err) {
        if (signal.aborted) return;
        if (stream.signal.aborted) {
          // Renewed: watch again at once, over the new connection.
          endpoint.stream = new AbortController();
          continue;
        }
        const error = ConnectError.from(err);
        if (error.code === Code.Unimplemented) {
          this.setServing(endpoint, true, "no health service");
        } else {
          this.setServing(endpoint, false, error.message);
          if (failedBeforeSending(error)) this.resolveSoon();
        }
      }
      failures++;
      const capMs = Math.min(this.deps.options.healthRetryMaxMs, HEALTH_RETRY_BASE_MS * 2 ** (failures - 1));
      await sleep(capMs * (0.5 + Math.random() / 2), undefined, { signal }).catch(() => {});
    }
  }

  private stopFollowing(endpoint: Endpoint): void {
    endpoint.stop.abort();
    clearTimeout(endpoint.returnTimer);
  }

  private async resolveAll(): Promise<void> {
    if (this.dnsTargets.length === 0) return;
    this.lastResolveMs = this.now();
    await Promise.all(this.dnsTargets.map((target) => this.resolve(target)));
    this.sync();
  }

  private async resolve(target: Extract<PeerTarget, { kind: "dns" }>): Promise<void> {
    const text = targetText(target);
    try {
      const addresses = await this.deps.options.lookup(target.host);
      if (addresses.length === 0) throw new Error("no address");
      this.resolved.set(
        text,
        addresses.map((address) => endpointOrigin(target.protocol, address, target.port)),
      );
    } catch (err) {
      // The last good answer stands, as in gRPC's resolver: a DNS hiccup must not empty the downstream.
      this.logger.warn({ target: text, err: (err as Error).message }, "cannot resolve a dns:/// target");
    }
  }

  /** Resolves again now, or a second after the last resolution if that was less than a second ago. */
  private resolveSoon(): void {
    if (this.dnsTargets.length === 0 || this.closed || this.soonTimer) return;
    const waitMs = Math.max(0, this.lastResolveMs + MIN_RESOLVE_GAP_MS - this.now());
    this.soonTimer = setTimeout(() => {
      this.soonTimer = undefined;
      void this.resolveAll();
    }, waitMs).unref();
  }

  /** Adds the endpoints the targets now name, and retires the ones they no longer do. */
  private sync(): void {
    if (this.closed) return;
    const wanted = new Set([...this.staticOrigins, ...[...this.resolved.values()].flat()]);
    let changed = false;
    for (const [origin, endpoint] of this.endpoints) {
      if (wanted.has(origin)) continue;
      this.endpoints.delete(origin);
      this.records.delete(endpoint.record);
      this.stopFollowing(endpoint);
      // New calls no longer pick it; its connection closes once the calls on it are done.
      endpoint.manager.close();
      this.logger.info({ endpoint: origin }, "endpoint removed");
      changed = true;
    }
    for (const origin of wanted) {
      if (this.endpoints.has(origin)) continue;
      const endpoint: Endpoint = {
        record: new EndpointRecord(origin, this.deps.options),
        manager: this.deps.sessionManager(origin),
        stop: new AbortController(),
        stream: new AbortController(),
      };
      this.endpoints.set(origin, endpoint);
      this.records.set(endpoint.record, endpoint);
      void this.follow(endpoint);
      this.logger.info({ endpoint: origin }, "endpoint added");
      changed = true;
    }
    if (!changed) return;
    this.rotation = [...this.endpoints.values()];
    this.rotationRecords = this.rotation.map((endpoint) => endpoint.record);
    this.updateGauge();
  }

  private updateGauge(): void {
    const metrics = this.deps.metrics;
    if (!metrics) return;
    const now = this.now();
    const counts = new Map<EndpointCondition, number>(ENDPOINT_STATES.map((state) => [state, 0]));
    for (const { record } of this.rotation) {
      const state = record.condition(now);
      counts.set(state, counts.get(state)! + 1);
    }
    for (const [state, count] of counts)
      metrics.clientEndpoints.set({ downstream: this.deps.downstream, state }, count);
  }
}

/**
 * An attempt whose connection broke under it (the endpoint's process died, its socket was
 * reset) fails in connect-node with Canceled (the stream reset as its session went) or Aborted
 * (ECONNRESET), though the caller cancelled nothing. gRPC calls that Unavailable, and so does
 * this: the endpoint counts it as an outage, and the retry interceptor may send the call to
 * another endpoint (if its method is idempotent: the server may have acted on it).
 */
function lostConnection(err: ConnectError, signal: AbortSignal, origin: string): ConnectError {
  if (signal.aborted) return err;
  const fromNode = err.cause instanceof Error && "code" in err.cause;
  const lost = err.code === Code.Canceled || (err.code === Code.Aborted && fromNode);
  if (!lost) return err;
  return new ConnectError(
    `${origin}: connection lost: ${err.rawMessage}`,
    Code.Unavailable,
    err.metadata,
    undefined,
    err,
  );
}

/** The system resolver's every address of `host`. */
export const systemLookup: LookupAll = async (host) =>
  (await dnsLookup(host, { all: true })).map((answer) => answer.address);
