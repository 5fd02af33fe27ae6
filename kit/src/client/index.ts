import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createTransport } from "@connectrpc/connect/protocol-grpc";
import {
  compressionBrotli,
  compressionGzip,
  createGrpcTransport,
  createNodeHttpClient,
} from "@connectrpc/connect-node";
import { clientTlsOptions, type Identity } from "../identity/identity.js";
import { spiffeId } from "../identity/spiffe.js";
import { DEFAULT_SERVER_LIMITS } from "../limits.js";
import type { Logger } from "../logger.js";
import type { ServiceMetrics } from "../metrics/registry.js";
import { clientMetricsInterceptor } from "../metrics/rpc.js";
import { tracingClientInterceptor } from "../tracing/rpc.js";
import { Balancer, type BalancingOptions, type EndpointStatus, type LookupAll, systemLookup } from "./balancer.js";
import { type BreakerOptions, type BreakerState, type BreakerStatus, createBreakers } from "./breaker.js";
import { outlierOptions } from "./outlier.js";
import { normalizePeer, type PeerTarget, parsePeer, targetText, targetUrl } from "./peer.js";
import { type RetryOptions, retryInterceptor } from "./retry.js";
import { createRetryBudget, type RetryBudgetOptions } from "./retry-budget.js";
import { type ConnectionTiming, GuardedSessionManager } from "./session-manager.js";

export { callOptionsFrom } from "./deadline.js";
export {
  endpointOrigin,
  normalizePeer,
  PeerSyntaxError,
  type PeerTarget,
  parsePeer,
  targetText,
  targetUrl,
} from "./peer.js";
export type {
  BalancingOptions,
  BreakerOptions,
  BreakerState,
  BreakerStatus,
  EndpointStatus,
  LookupAll,
  RetryBudgetOptions,
  RetryOptions,
};
export { systemLookup };

export interface ClientFactoryOptions {
  logger: Logger;
  breaker?: BreakerOptions;
  retry?: RetryOptions;
  /** Retry throttling, one budget per downstream. */
  retryBudget?: RetryBudgetOptions;
  /** Deadline of calls whose caller gives none. Default 10s. */
  defaultTimeoutMs?: number;
  /**
   * How long a connection with no call open is kept. Default: half the servers' default idle
   * timeout, so that the client ends an idle connection before the server does.
   */
  idleTimeoutMs?: number;
  /**
   * A connection with calls open is pinged after `intervalMs` without data and closed when the
   * ping goes unanswered for `timeoutMs`, so that a peer gone silent (its machine lost, a
   * network partition) fails its calls and streams. Defaults 10s and 5s.
   */
  keepalive?: { intervalMs?: number; timeoutMs?: number };
  /**
   * The calling service's identity: every call goes over mTLS, presenting its (current)
   * certificate and accepting only the server identity named for the downstream.
   */
  identity?: Identity;
  /** Where calls, retries and breaker states are counted (`hookmesh_rpc_client_*`, `hookmesh_circuit_breaker_*`). */
  metrics?: ServiceMetrics;
  /** Outlier ejection, health watches and DNS of downstreams with several endpoints. */
  balancing?: BalancingOptions;
}

/**
 * The one way a service calls another. Every call runs through a retry interceptor and,
 * inside it, a circuit breaker per downstream and method, over one gRPC transport per
 * downstream. A downstream is a peer value (see `parsePeer`): one URL is one HTTP/2
 * connection; several URLs, or a `dns:///` target, are balanced: one connection per endpoint,
 * each call (and each retry) to the next endpoint that is serving and not ejected.
 */
export interface ClientFactory {
  /**
   * A client for `service` at `peer`, a peer value such as `https://tasks:50051` or
   * `dns:///tasks.hookmesh.svc.cluster.local:50051,https://10.0.0.5:50051`. Clients for the
   * same downstream share its transport. With an identity, `server` names the identity every
   * endpoint must present, e.g. `tasks` for `spiffe://<trust domain>/tasks`; a server
   * presenting another is refused (Unavailable).
   */
  client<T extends DescService>(service: T, peer: string, server?: string): Client<T>;
  /** The state of the breaker for `method` at `peer`; "closed" before its first call. */
  breakerState(peer: string, method: DescMethod): BreakerState;
  /** Every breaker created so far, for health reports. */
  breakers(): BreakerStatus[];
  /** Every endpoint of the balanced downstreams (peers of several endpoints), for health reports. */
  endpoints(): EndpointStatus[];
  /**
   * Stops the breakers' timers, the health watches and DNS resolutions of balanced downstreams,
   * and stops following the identity's rotations; calls made
   * afterwards fail fast with Unavailable. Idle HTTP/2 connections do not keep the process
   * alive, so they are left to the transport: aborting them can raise an uncaught exception
   * when the peer sends GOAWAY at the same time (connectrpc/connect-es#1768).
   */
  close(): void;
}

export function createClientFactory(options: ClientFactoryOptions): ClientFactory {
  const { logger, identity, defaultTimeoutMs = 10_000 } = options;
  const metrics = options.metrics?.rpc;
  const timing: ConnectionTiming = {
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_SERVER_LIMITS.idleTimeoutMs / 2,
    pingIntervalMs: options.keepalive?.intervalMs ?? 10_000,
    pingTimeoutMs: options.keepalive?.timeoutMs ?? 5_000,
  };
  const breakers = createBreakers(options.breaker ?? {}, logger, metrics);
  const balancing = {
    ...outlierOptions(options.balancing),
    resolveIntervalMs: options.balancing?.resolveIntervalMs ?? 30_000,
    lookup: options.balancing?.lookup ?? systemLookup,
    healthRetryMaxMs: options.balancing?.healthRetryMaxMs ?? 5_000,
  };
  /** The scheme of the endpoints a `dns:///` target resolves to. */
  const protocol = identity ? "https:" : "http:";
  /** Each downstream's transport, and the server identity it accepts under mTLS. */
  const transports = new Map<string, { transport: Transport; server: string | undefined }>();
  const balancers: Balancer[] = [];
  const unfollows: (() => void)[] = [];

  /** The TLS options of a connection to a server that must present `server`'s identity; none in cleartext. */
  function tlsOptionsFor(downstream: string, server: string | undefined) {
    if (!identity) return undefined;
    if (server === undefined)
      throw new Error(`${downstream}: a client over mTLS needs the identity name its server must present`);
    const expected = spiffeId(identity.trustDomain, server);
    return () => clientTlsOptions(identity, expected);
  }

  function sessionManagerFor(downstream: string, server: string | undefined): GuardedSessionManager {
    const tlsOptions = tlsOptionsFor(downstream, server);
    if (!tlsOptions) return new GuardedSessionManager(downstream, timing);
    const manager = new GuardedSessionManager(downstream, timing, tlsOptions());
    unfollows.push(identity!.onChange(() => manager.renew(tlsOptions())));
    return manager;
  }

  /**
   * The interceptors of a downstream, outermost first: a call is counted once, whatever its
   * retries; every retry attempt passes through the breaker, so each counts in its statistics,
   * and an open circuit ends the retries. A balanced downstream's pick comes last, so that each
   * attempt goes to an endpoint of its own.
   */
  function interceptorsFor(downstream: string, pick?: Interceptor): Interceptor[] {
    return [
      ...(metrics ? [clientMetricsInterceptor(metrics, downstream)] : []),
      retryInterceptor(
        options.retry ?? {},
        createRetryBudget(options.retryBudget),
        logger.child({ downstream }),
        metrics && { metrics, downstream },
      ),
      breakers.interceptor(downstream),
      tracingClientInterceptor(),
      ...(pick ? [pick] : []),
    ];
  }

  /**
   * A transport over several endpoints: connect-node's gRPC transport with an HTTP client whose
   * session manager is the one of the endpoint the pick sent the attempt to.
   */
  function balancedTransport(downstream: string, targets: PeerTarget[], server: string | undefined): Transport {
    const tlsOptions = tlsOptionsFor(downstream, server);
    // What calls are addressed to before the pick; also what tracing records as the server.
    const baseUrl = targetUrl(targets[0]!);
    const balancer = new Balancer({
      downstream,
      targets,
      baseUrl,
      sessionManager: (origin) => new GuardedSessionManager(origin, timing, tlsOptions?.()),
      options: balancing,
      logger,
      ...(metrics && { metrics }),
    });
    balancers.push(balancer);
    if (tlsOptions) unfollows.push(identity!.onChange(() => balancer.renew(tlsOptions())));
    return createTransport({
      baseUrl,
      httpClient: createNodeHttpClient({ httpVersion: "2", sessionProvider: (url) => balancer.sessionManager(url) }),
      interceptors: interceptorsFor(downstream, balancer.interceptor()),
      defaultTimeoutMs,
      // What createGrpcTransport gives a transport unless told otherwise.
      useBinaryFormat: true,
      acceptCompression: [compressionGzip, compressionBrotli],
      sendCompression: null,
      compressMinBytes: 1024,
      readMaxBytes: 0xffffffff,
      writeMaxBytes: 0xffffffff,
    });
  }

  function transportFor(peer: string, server: string | undefined): Transport {
    const targets = parsePeer(peer, protocol);
    const downstream = targets.map(targetText).join(",");
    const existing = transports.get(downstream);
    if (existing) {
      if (identity && existing.server !== server) {
        throw new Error(`${downstream}: its server is expected to be ${existing.server}, not also ${server}`);
      }
      return existing.transport;
    }
    if (identity && targets.some((target) => target.kind === "url" && !target.origin.startsWith("https:"))) {
      throw new Error(`${downstream}: a client over mTLS needs https:// URLs`);
    }
    const only = targets.length === 1 ? targets[0] : undefined;
    // One URL is one endpoint, with nothing to choose: the transport of old, at no extra cost.
    const transport =
      only?.kind === "url"
        ? createGrpcTransport({
            baseUrl: downstream,
            sessionManager: sessionManagerFor(downstream, server),
            defaultTimeoutMs,
            interceptors: interceptorsFor(downstream),
          })
        : balancedTransport(downstream, targets, server);
    transports.set(downstream, { transport, server });
    return transport;
  }

  return {
    client(service, peer, server) {
      return createClient(service, transportFor(peer, server));
    },
    breakerState(peer, method) {
      return breakers.state(normalizePeer(peer, protocol), method);
    },
    breakers() {
      return breakers.list();
    },
    endpoints() {
      return balancers.flatMap((balancer) => balancer.status());
    },
    close() {
      breakers.shutdown();
      for (const balancer of balancers) balancer.close();
      for (const unfollow of unfollows.splice(0)) unfollow();
    },
  };
}
