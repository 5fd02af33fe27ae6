import * as http from "node:http";
import type * as http2 from "node:http2";
import type * as net from "node:net";
import { type Env, envInt } from "./config.js";
import type { Logger } from "./logger.js";

/**
 * What one HTTP port lets any client hold, and for how long: nothing that reaches the port can
 * keep a connection, a half-sent request or a silent socket open without bound.
 */
export interface HttpLimits {
  /** Open TCP connections; a new one beyond it is closed at once. */
  maxConnections: number;
  /** A connection with no call in flight is closed after this long (HTTP/1.1: before its first request). */
  idleTimeoutMs: number;
  /** An HTTP/1.1 request's headers must have arrived this long after its first byte (slowloris). */
  headersTimeoutMs: number;
  /** An HTTP/1.1 request, body included, must have arrived within this; a response may stream longer. */
  requestTimeoutMs: number;
  /** How long an HTTP/1.1 connection waits for its next request. */
  keepAliveTimeoutMs: number;
  /** A request's header block (HTTP/1.1: 431) or header list (HTTP/2: the stream is reset), in bytes. */
  maxHeaderBytes: number;
  /**
   * Header fields per request. HTTP/2 resets a stream with more; HTTP/1.1 answers 431
   * (`refuseExcessHeaders`), as Node's parser alone would keep the first ones and drop the rest.
   */
  maxHeaders: number;
}

/** The limits of a mesh port, which also speaks TLS and HTTP/2. */
export interface ServerLimits extends HttpLimits {
  /** The TLS handshake, or on a cleartext port the first bytes that tell HTTP/2 from HTTP/1.1, must be done within this. */
  handshakeTimeoutMs: number;
  /** Calls open at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
}

/**
 * A mesh port's callers are a few services, each holding one HTTP/2 connection with long-lived
 * streams (WatchTask, LeaseTasks) on it: many connections are not expected, many streams are.
 */
export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = {
  maxConnections: 1024,
  idleTimeoutMs: 60_000,
  handshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  maxHeaders: 100,
  maxConcurrentStreams: 256,
};

/** The webhook edge: one short POST per delivery from the providers, open to the internet. */
export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = {
  maxConnections: 1024,
  idleTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  maxHeaders: 100,
};

/** The variable suffix of each limit, e.g. `HOOKMESH_SERVER_MAX_CONNECTIONS`. */
const SUFFIXES: Record<keyof ServerLimits, string> = {
  maxConnections: "MAX_CONNECTIONS",
  idleTimeoutMs: "IDLE_TIMEOUT_MS",
  handshakeTimeoutMs: "HANDSHAKE_TIMEOUT_MS",
  headersTimeoutMs: "HEADERS_TIMEOUT_MS",
  requestTimeoutMs: "REQUEST_TIMEOUT_MS",
  keepAliveTimeoutMs: "KEEP_ALIVE_TIMEOUT_MS",
  maxHeaderBytes: "MAX_HEADER_BYTES",
  maxHeaders: "MAX_HEADERS",
  maxConcurrentStreams: "MAX_STREAMS",
};

/**
 * A mesh port's limits: `<NAME>_SERVER_<LIMIT>` for one service, else `HOOKMESH_SERVER_<LIMIT>`
 * for all of them (as `<NAME>_REDIS_URL` over `REDIS_URL`), else the default.
 */
export function envServerLimits(env: Env, name: string): ServerLimits {
  const own = `${name.toUpperCase()}_SERVER_`;
  const variable = (limit: keyof ServerLimits) => {
    const ownVariable = own + SUFFIXES[limit];
    return env[ownVariable]?.trim() ? ownVariable : `HOOKMESH_SERVER_${SUFFIXES[limit]}`;
  };
  return {
    ...readHttpLimits(env, variable, DEFAULT_SERVER_LIMITS),
    handshakeTimeoutMs: envInt(env, variable("handshakeTimeoutMs"), DEFAULT_SERVER_LIMITS.handshakeTimeoutMs, {
      min: 1,
    }),
    maxConcurrentStreams: envInt(env, variable("maxConcurrentStreams"), DEFAULT_SERVER_LIMITS.maxConcurrentStreams, {
      min: 1,
    }),
  };
}

/** A plain HTTP port's limits from `<PREFIX>_<LIMIT>`, e.g. `GATEWAY_HTTP_MAX_CONNECTIONS`. */
export function envHttpLimits(env: Env, prefix: string, defaults: HttpLimits = DEFAULT_HTTP_LIMITS): HttpLimits {
  return readHttpLimits(env, (limit) => `${prefix}_${SUFFIXES[limit]}`, defaults);
}

function readHttpLimits(env: Env, variable: (limit: keyof ServerLimits) => string, defaults: HttpLimits): HttpLimits {
  const read = (limit: keyof HttpLimits, min: number, max?: number) =>
    envInt(env, variable(limit), defaults[limit], { min, ...(max !== undefined && { max }) });
  const headersTimeoutMs = read("headersTimeoutMs", 1);
  return {
    maxConnections: read("maxConnections", 1),
    idleTimeoutMs: read("idleTimeoutMs", 1),
    headersTimeoutMs,
    // Node refuses a headers timeout longer than the request timeout it is part of.
    requestTimeoutMs: read("requestTimeoutMs", headersTimeoutMs),
    keepAliveTimeoutMs: read("keepAliveTimeoutMs", 1),
    // Below a kilobyte not even a gRPC call's own headers fit; HTTP/2 caps a header list at 2^31.
    maxHeaderBytes: read("maxHeaderBytes", 1024, 2 ** 31 - 1),
    // HTTP/2 needs room for its four pseudo-headers.
    maxHeaders: read("maxHeaders", 8),
  };
}

/** How often refused connections are logged at most: an attacker at the cap must not flood the log too. */
const REFUSED_LOG_INTERVAL_MS = 10_000;

/**
 * Caps `server` at `maxConnections` open connections: Node closes each one beyond it as it is
 * accepted. Refusals are logged with their count, at most once per interval.
 */
export function capConnections(server: net.Server, maxConnections: number, logger: Logger): void {
  server.maxConnections = maxConnections;
  let refused = 0;
  let loggedAt = Number.NEGATIVE_INFINITY;
  server.on("drop", () => {
    refused++;
    const now = Date.now();
    if (now - loggedAt < REFUSED_LOG_INTERVAL_MS) return;
    logger.warn({ maxConnections, refused }, "connection limit reached: refusing new connections");
    loggedAt = now;
    refused = 0;
  });
}

/**
 * The HTTP/1.1 settings Node reads from a server object when a connection comes. An
 * `http2.Http2SecureServer` with `allowHTTP1` serves HTTP/1.1 with them too, though its types
 * do not say so.
 */
interface Http1Server {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  maxHeadersCount: number | null;
  maxHeaderSize?: number;
  connectionsCheckingInterval?: number;
  on(event: "timeout", listener: (socket: net.Socket) => void): unknown;
  on(event: "request", listener: (req: object, res: object) => void): unknown;
}

/**
 * Applies `limits` to the HTTP/1.1 connections `server` serves. A connection's idle and
 * keep-alive timeouts end it only between calls: a response that streams slowly (WatchTask over
 * gRPC-Web or Connect) is bounded by its deadline and the connection cap, not by the socket's
 * silence, and the request timeout covers only the request, which such a call sends at once.
 *
 * A plain `http.Server` gets the idle timeout on each socket; a server that also speaks HTTP/2
 * sets it on its HTTP/1.1 sockets itself, as the server-wide one would cut HTTP/2 sessions.
 */
export function limitHttp1(server: http.Server | http2.Http2SecureServer, limits: HttpLimits): void {
  const settings = server as unknown as Http1Server;
  settings.headersTimeout = limits.headersTimeoutMs;
  settings.requestTimeout = limits.requestTimeoutMs;
  settings.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // One more than allowed, so that refuseExcessHeaders can tell a request that had too many.
  settings.maxHeadersCount = limits.maxHeaders + 1;
  settings.maxHeaderSize = limits.maxHeaderBytes;
  // Node looks for expired headers and requests on this interval (30 s unless set), so a
  // timeout can only be as precise as it.
  settings.connectionsCheckingInterval = Math.max(10, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 2)));
  if (server instanceof http.Server) server.timeout = limits.idleTimeoutMs;
  const inFlight = new WeakMap<net.Socket, number>();
  // With a listener here, Node leaves a timed-out socket to it instead of destroying it.
  settings.on("timeout", (socket) => {
    if (!inFlight.get(socket)) socket.destroy();
  });
  // A server that also speaks HTTP/2 emits its HTTP/2 calls here too; their sessions are not sockets it times out.
  settings.on("request", (req, res) => {
    if (!(req instanceof http.IncomingMessage && res instanceof http.ServerResponse)) return;
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    res.once("close", () => inFlight.set(socket, (inFlight.get(socket) ?? 1) - 1));
  });
}

type RequestHandler<Req, Res> = (req: Req, res: Res) => void;

/**
 * Wraps a server's request handler so that an HTTP/1.1 request with more header fields than
 * `maxHeaders` is answered 431 and its connection closed. Node's parser keeps the first
 * `maxHeadersCount` fields and silently drops the rest, so without this a request would be
 * judged on part of its headers: a second copy of a signature header beyond the count would
 * vanish, and the first alone would pass where the two together must not. Pair it with
 * `limitHttp1`, which lets the parser keep one field more than allowed.
 */
export function refuseExcessHeaders<Req extends http.IncomingMessage | http2.Http2ServerRequest, Res>(
  limits: HttpLimits,
  handler: RequestHandler<Req, Res>,
): RequestHandler<Req, Res> {
  return (req, res) => {
    if (req instanceof http.IncomingMessage && res instanceof http.ServerResponse) {
      if (req.rawHeaders.length / 2 > limits.maxHeaders) {
        res.writeHead(431, { "content-type": "text/plain", connection: "close" });
        res.end(`more than ${limits.maxHeaders} header fields\n`);
        return;
      }
    }
    handler(req, res);
  };
}

/**
 * A cleartext HTTP/1.1 server held to `limits` as every hookmesh HTTP port is (the webhook edge,
 * the admin ports, the dashboard's web port): headers past `maxHeaders` refused with 431, its
 * timeouts and keep-alive bounds, and at most `maxConnections` open at once.
 */
export function createLimitedHttpServer(
  limits: HttpLimits,
  logger: Logger,
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): http.Server {
  const server = http.createServer(refuseExcessHeaders(limits, handler));
  limitHttp1(server, limits);
  capConnections(server, limits.maxConnections, logger);
  return server;
}

/** Listens on `host:port`, failing (EADDRINUSE, say) instead of emitting an error nobody hears. */
export async function listenHttp(server: net.Server, port: number, host: string): Promise<net.AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server.address() as net.AddressInfo;
}
