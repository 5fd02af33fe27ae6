import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import type { TLSSocket } from "node:tls";
import type { DescFile } from "@bufbuild/protobuf";
import { type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { authorizationInterceptor } from "./auth/authorize.js";
import { type Peer, peerKey } from "./auth/peer.js";
import type { OperatorTokens } from "./auth/tokens.js";
import { type HealthState, healthRoutes } from "./health.js";
import type { Identity } from "./identity/identity.js";
import { peerFromCertificate } from "./identity/spiffe.js";
import { type ErrorMapper, serverCallInterceptor } from "./interceptors.js";
import { capConnections, DEFAULT_SERVER_LIMITS, limitHttp1, refuseExcessHeaders, type ServerLimits } from "./limits.js";
import type { Logger } from "./logger.js";
import type { ServiceMetrics } from "./metrics/registry.js";
import { serverMetricsInterceptor } from "./metrics/rpc.js";
import { reflectionRoutes } from "./reflection.js";
import { tracingServerInterceptor } from "./tracing/rpc.js";

/** How a server proves who it is, learns who calls it and bounds what a caller holds; the same for every service. */
export interface SecurityOptions {
  /**
   * The service's identity: the port speaks mTLS only, presents the identity's certificate
   * (the current one, as files rotate), asks for a client certificate verified against its CA
   * bundle, gives every call the caller's identity under `peerKey`, and lets a call through
   * only to a method whose `hookmesh.auth.v1.access` option names that identity (default deny).
   * Without one the port is cleartext with no identities and so no authorization
   * (`HOOKMESH_INSECURE=1`, loopback only), which `listen` warns about.
   */
  identity?: Identity;
  /** Bearer tokens that identify callers without a client certificate (operators' scripts, browsers). */
  tokens?: OperatorTokens;
  /** What any one client may hold on the port (a service's `ListenConfig.limits`); the defaults unless given. */
  limits?: ServerLimits;
}

/** Registers a service's own RPCs on the router. */
export type RoutesFn = (router: ConnectRouter) => void;

export interface ServerOptions extends SecurityOptions {
  /** Registers the service's own RPCs. Health and reflection are added beside them. */
  routes: RoutesFn;
  health: HealthState;
  logger: Logger;
  /** Maps the service's domain errors to ConnectErrors. */
  mapError?: ErrorMapper;
  interceptors?: Interceptor[];
  /** Largest request message accepted, in bytes. */
  readMaxBytes?: number;
  /** Where the calls served are counted and timed (`hookmesh_rpc_server_*`). */
  metrics?: ServiceMetrics;
}

export interface MeshServer {
  /** Listens on `host`, loopback unless given (a service passes its `<NAME>_HOST`). */
  listen(port: number, host?: string): Promise<AddressInfo>;
  /**
   * Graceful stop: health goes NOT_SERVING, no new connections, GOAWAY to HTTP/2 sessions,
   * in-flight calls get `graceMs` to finish, then whatever is left is cut.
   */
  close(graceMs?: number): Promise<void>;
  readonly health: HealthState;
}

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0");

/**
 * Builds a server that speaks gRPC, gRPC-Web and Connect on one port. Cleartext ports take
 * HTTP/2 with prior knowledge (gRPC) and HTTP/1.1 (browsers, curl) by sniffing the connection
 * preface, because Node's h2c server cannot fall back to HTTP/1.1 itself; TLS ports negotiate
 * with ALPN.
 */
export function createMeshServer(options: ServerOptions): MeshServer {
  const { logger, health, identity } = options;
  const limits = options.limits ?? DEFAULT_SERVER_LIMITS;
  const routes = (router: ConnectRouter) => {
    options.routes(router);
    healthRoutes(health)(router);
    reflectionRoutes(servedFiles(router))(router);
  };
  const handler = connectNodeAdapter({
    routes,
    // The call log comes first (after the metrics, which count what it logs), so that refused calls are logged like any other.
    interceptors: [
      ...(options.metrics ? [serverMetricsInterceptor(options.metrics.rpc)] : []),
      tracingServerInterceptor(),
      serverCallInterceptor(logger, options.mapError),
      ...(identity ? [authorizationInterceptor({ logger, ...(options.tokens && { tokens: options.tokens }) })] : []),
      ...(options.interceptors ?? []),
    ],
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
    ...(identity && { contextValues: peerContext(identity.trustDomain) }),
  });

  const http2Options: http2.ServerOptions = {
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    maxHeaderListPairs: limits.maxHeaders,
  };

  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };

  let h2: http2.Http2Server | http2.Http2SecureServer;
  /** The cleartext HTTP/1.1 server, which is handed its connections and never listens itself. */
  let h1: http.Server | undefined;
  /** Whatever serves HTTP/1.1 on the port, so that close can end its idle keep-alive connections. */
  let http1: { closeIdleConnections(): void };
  let listener: net.Server;
  /** Stops following the identity's rotations. */
  let unfollow = () => {};
  if (identity) {
    // A client certificate is asked for but not required at the handshake: health probes and
    // bearer-token callers come without one. A call's identity is only ever a certificate the CA
    // bundle verified (peerContext) or a valid token, and the authorization interceptor refuses
    // everything but health to a caller with neither.
    const tls = {
      ...serverCredentials(identity),
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: limits.handshakeTimeoutMs,
    };
    const secure = http2.createSecureServer(
      { ...tls, ...http2Options, allowHTTP1: true },
      refuseExcessHeaders(limits, handler),
    );
    // New connections get the rotated certificate and CA bundle; open ones keep what they negotiated.
    unfollow = identity.onChange(() => secure.setSecureContext(serverCredentials(identity)));
    h2 = secure;
    listener = h2;
    // With allowHTTP1 the TLS server tracks its HTTP/1.1 connections (missing from @types/node).
    http1 = h2 as unknown as typeof http1;
    h2.on("connection", track);
    limitHttp1(secure, limits);
    // The server-wide socket timeout would apply to HTTP/2 sessions too, which closeWhenIdle keeps instead.
    secure.on("secureConnection", (socket) => {
      if (socket.alpnProtocol !== "h2") socket.setTimeout(limits.idleTimeoutMs);
    });
  } else {
    h2 = http2.createServer(http2Options, handler);
    const plain = http.createServer(refuseExcessHeaders(limits, handler));
    limitHttp1(plain, limits);
    h1 = plain;
    http1 = plain;
    listener = net.createServer((socket) => {
      track(socket);
      sniffProtocol(socket, limits.handshakeTimeoutMs, (isHttp2) => (isHttp2 ? h2 : plain).emit("connection", socket));
    });
  }
  capConnections(listener, limits.maxConnections, logger);
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    closeWhenIdle(session, limits.idleTimeoutMs);
  });

  return {
    health,
    async listen(port, host = "127.0.0.1") {
      await new Promise<void>((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(port, host, () => {
          listener.off("error", reject);
          resolve();
        });
      });
      // Node starts an HTTP server's connection tracking, which closeIdleConnections and
      // headersTimeout rely on, on "listening"; this one is handed connections and never listens.
      h1?.emit("listening");
      const address = listener.address() as AddressInfo;
      logger.info({ port: address.port, host: address.address, identity: identity?.id }, "listening");
      if (!identity) {
        logger.warn(
          { port: address.port, host: address.address },
          "INSECURE: cleartext, no client identities and no authorization (HOOKMESH_INSECURE=1); anyone who reaches this port may call every method",
        );
      }
      return address;
    },
    async close(graceMs = 10_000) {
      health.shutdown();
      unfollow();
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      for (const session of sessions) session.close();
      http1.closeIdleConnections();
      const deadline = setTimeout(() => {
        if (sessions.size + sockets.size > 0) {
          logger.warn({ sessions: sessions.size, sockets: sockets.size }, "grace period over, closing connections");
        }
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      const idle = setInterval(() => http1.closeIdleConnections(), 100);
      await closed;
      clearTimeout(deadline);
      clearInterval(idle);
      // Stops the cleartext HTTP/1.1 server's connection checks; it has no handle to close.
      h1?.close();
    },
  };
}

/**
 * Waits for enough of the first bytes to tell an HTTP/2 preface from an HTTP/1.x request line,
 * for at most `timeoutMs`: a connection that says nothing holds nothing. The bytes are kept
 * until the protocol is known and then go back with `unshift`: both of Node's HTTP servers read
 * what is buffered on the socket before they read from its handle. (Unshifting a partial
 * preface while still waiting makes the stream emit "readable" again at once, a busy loop that
 * a client sending one "P" would hold the process in.)
 */
function sniffProtocol(socket: net.Socket, timeoutMs: number, route: (isHttp2: boolean) => void) {
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const chunks: Buffer[] = [];
  const onReadable = () => {
    for (let chunk: Buffer | null = socket.read(); chunk !== null; chunk = socket.read()) chunks.push(chunk);
    const received = Buffer.concat(chunks);
    const head = received.subarray(0, HTTP2_PREFACE.length);
    if (head.length < HTTP2_PREFACE.length && HTTP2_PREFACE.subarray(0, head.length).equals(head)) return;
    socket.off("readable", onReadable);
    clearTimeout(timer);
    socket.unshift(received);
    route(head.equals(HTTP2_PREFACE));
  };
  socket.on("readable", onReadable);
  socket.on("error", () => socket.destroy());
  socket.once("close", () => clearTimeout(timer));
}

/**
 * Sends GOAWAY to a session once it has had no open stream for `idleTimeoutMs`, from its start
 * or its last stream's end. Open streams are counted rather than bytes, so that client PINGs do
 * not keep an unused session, and a quiet long-lived stream (WatchTask, a LeaseTasks long poll)
 * keeps its session however long it is silent. Mesh clients open a new session for their next
 * call.
 */
function closeWhenIdle(session: http2.ServerHttp2Session, idleTimeoutMs: number) {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => session.close(), idleTimeoutMs);
  };
  arm();
  session.on("stream", (stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      open--;
      if (open === 0 && !session.closed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
}

function serverCredentials(identity: Identity): { cert: string; key: string; ca: string } {
  const { cert, key, ca } = identity.current();
  return { cert, key, ca };
}

/**
 * Context values carrying the caller's identity from its verified client certificate. A
 * connection's certificate never changes, so it is read once per connection: per HTTP/2
 * session, or per socket for HTTP/1.1.
 */
function peerContext(trustDomain: string) {
  const peers = new WeakMap<object, Peer | undefined>();
  return (req: http.IncomingMessage | http2.Http2ServerRequest) => {
    const connection = "stream" in req ? req.stream.session : req.socket;
    const values = createContextValues();
    if (connection === undefined) return values;
    if (!peers.has(connection)) {
      const socket = req.socket as TLSSocket;
      const certificate = socket.authorized ? socket.getPeerX509Certificate() : undefined;
      peers.set(connection, certificate && peerFromCertificate(certificate.subjectAltName, trustDomain));
    }
    return values.set(peerKey, peers.get(connection));
  };
}

/** The .proto files of every service registered on the router, for reflection. */
function servedFiles(router: ConnectRouter): DescFile[] {
  return [...new Set(router.handlers.map((h) => h.service.file))];
}
