import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { clientTlsOptions, type Identity } from "../identity/identity.js";
import { spiffeId } from "../identity/spiffe.js";
import { DEFAULT_SERVER_LIMITS } from "../limits.js";
import type { Logger } from "../logger.js";
import type { ServiceMetrics } from "../metrics/registry.js";
import { clientMetricsInterceptor } from "../metrics/rpc.js";
import { tracingClientInterceptor } from "../tracing/rpc.js";
import { type BreakerOptions, type BreakerState, type BreakerStatus, createBreakers } from "./breaker.js";
import { type RetryOptions, retryInterceptor } from "./retry.js";
import { createRetryBudget, type RetryBudgetOptions } from "./retry-budget.js";
import { GuardedSessionManager } from "./session-manager.js";

export { callOptionsFrom } from "./deadline.js";
export type { BreakerOptions, BreakerState, BreakerStatus, RetryBudgetOptions, RetryOptions };

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
   * The calling service's identity: every call goes over mTLS, presenting its (current)
   * certificate and accepting only the server identity named for the downstream.
   */
  identity?: Identity;
  /** Where calls, retries and breaker states are counted (`hookmesh_rpc_client_*`, `hookmesh_circuit_breaker_*`). */
  metrics?: ServiceMetrics;
}

/**
 * The one way a service calls another. Every call runs through a retry interceptor and,
 * inside it, a circuit breaker per downstream and method, over one gRPC transport (and
 * HTTP/2 connection) per downstream.
 */
export interface ClientFactory {
  /**
   * A client for `service` at `baseUrl`. Clients for the same downstream share its transport.
   * With an identity, `server` names the identity the downstream must present, e.g. `tasks`
   * for `spiffe://<trust domain>/tasks`; a server presenting another is refused (Unavailable).
   */
  client<T extends DescService>(service: T, baseUrl: string, server?: string): Client<T>;
  /** The state of the breaker for `method` at `baseUrl`; "closed" before its first call. */
  breakerState(baseUrl: string, method: DescMethod): BreakerState;
  /** Every breaker created so far, for health reports. */
  breakers(): BreakerStatus[];
  /**
   * Stops the breakers' timers and stops following the identity's rotations; calls made
   * afterwards fail fast with Unavailable. Idle HTTP/2 connections do not keep the process
   * alive, so they are left to the transport: aborting them can raise an uncaught exception
   * when the peer sends GOAWAY at the same time (connectrpc/connect-es#1768).
   */
  close(): void;
}

export function createClientFactory(options: ClientFactoryOptions): ClientFactory {
  const { logger, identity, defaultTimeoutMs = 10_000 } = options;
  const metrics = options.metrics?.rpc;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_SERVER_LIMITS.idleTimeoutMs / 2;
  const breakers = createBreakers(options.breaker ?? {}, logger, metrics);
  /** Each downstream's transport, and the server identity it accepts under mTLS. */
  const transports = new Map<string, { transport: Transport; server: string | undefined }>();
  const unfollows: (() => void)[] = [];

  function sessionManagerFor(downstream: string, server: string | undefined): GuardedSessionManager {
    if (!identity) return new GuardedSessionManager(downstream, idleTimeoutMs);
    if (server === undefined)
      throw new Error(`${downstream}: a client over mTLS needs the identity name its server must present`);
    if (!downstream.startsWith("https:")) throw new Error(`${downstream}: a client over mTLS needs an https:// URL`);
    const expected = spiffeId(identity.trustDomain, server);
    const manager = new GuardedSessionManager(downstream, idleTimeoutMs, clientTlsOptions(identity, expected));
    unfollows.push(identity.onChange(() => manager.renew(clientTlsOptions(identity, expected))));
    return manager;
  }

  function transportFor(downstream: string, server: string | undefined): Transport {
    const existing = transports.get(downstream);
    if (existing) {
      if (identity && existing.server !== server) {
        throw new Error(`${downstream}: its server is expected to be ${existing.server}, not also ${server}`);
      }
      return existing.transport;
    }
    const transport = createGrpcTransport({
      baseUrl: downstream,
      sessionManager: sessionManagerFor(downstream, server),
      defaultTimeoutMs,
      // The first interceptor is the outermost: a call is counted once, whatever its retries;
      // every retry attempt passes through the breaker, so each counts in its statistics, and
      // an open circuit ends the retries.
      interceptors: [
        ...(metrics ? [clientMetricsInterceptor(metrics, downstream)] : []),
        retryInterceptor(
          options.retry ?? {},
          createRetryBudget(options.retryBudget),
          logger.child({ downstream }),
          metrics && { metrics, downstream },
        ),
        breakers.interceptor(downstream),
        tracingClientInterceptor(),
      ],
    });
    transports.set(downstream, { transport, server });
    return transport;
  }

  return {
    client(service, baseUrl, server) {
      return createClient(service, transportFor(downstreamOf(baseUrl), server));
    },
    breakerState(baseUrl, method) {
      return breakers.state(downstreamOf(baseUrl), method);
    },
    breakers() {
      return breakers.list();
    },
    close() {
      breakers.shutdown();
      for (const unfollow of unfollows.splice(0)) unfollow();
    },
  };
}

/** One spelling per downstream, so that "http://tasks:8080/" and "http://tasks:8080" share a transport. */
function downstreamOf(baseUrl: string): string {
  return new URL(baseUrl).href.replace(/\/+$/, "");
}
