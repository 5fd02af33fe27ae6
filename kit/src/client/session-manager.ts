import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { type createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ServerIdentityError } from "../identity/identity.js";

type SessionManager = NonNullable<Parameters<typeof createGrpcTransport>[0]["sessionManager"]>;

/** When a connection is closed for having no call open, and when one with calls open is found dead. */
export interface ConnectionTiming {
  idleTimeoutMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
}

/** How deep an error's `cause` chain is searched for a refused server identity. */
const MAX_CAUSES = 8;

/**
 * connect-node's Http2SessionManager, with two additions.
 *
 * Every session it opens gets an `error` listener of its own. When a peer sends GOAWAY to an
 * idle connection (as a hookmesh service does on graceful shutdown), the manager destroys the
 * session with an error that Node.js emits only once the socket has closed; if a new call has
 * moved the manager on by then, it has removed its listeners and the error would crash the
 * process (connectrpc/connect-es#1768). The manager still sees and handles every error while
 * it listens; this only keeps the late one from becoming an uncaught exception.
 *
 * `renew` moves new calls to connections made with new TLS options (a rotated certificate):
 * connect-node's manager takes its session options once, so a new one replaces it.
 *
 * A connection with no open stream is closed after `idleTimeoutMs`. A server closes its own
 * idle connections too (`IDLE_TIMEOUT_MS` of kit's limits), and a call sent as its GOAWAY
 * crosses the wire is refused; the client closing first leaves no such race.
 *
 * A connection with open streams is pinged every `pingIntervalMs` without data, and closed,
 * failing its calls with Unavailable, when a ping goes unanswered for `pingTimeoutMs`: a peer
 * whose machine vanished sends no FIN or RST, and a long stream (a worker's session, a health
 * watch) would otherwise wait on it until the kernel gives up, many minutes later.
 */
export class GuardedSessionManager implements SessionManager {
  private inner: Http2SessionManager;
  /** Sessions of the current manager, which `renew` closes once their calls are done. */
  private sessions = new Set<http2.Http2Session>();
  private readonly guarded = new WeakSet<http2.Http2Session>();
  /** The manager each stream came from, which keeps that stream's connection alive. */
  private readonly managers = new WeakMap<http2.ClientHttp2Stream, Http2SessionManager>();

  constructor(
    private readonly url: string,
    private readonly timing: ConnectionTiming,
    sessionOptions?: http2.SecureClientSessionOptions,
  ) {
    this.inner = this.manager(sessionOptions);
  }

  get authority(): string {
    return this.inner.authority;
  }

  async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const inner = this.inner;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = await inner.request(...args);
    } catch (err) {
      throw this.refusedServer(err) ?? err;
    }
    this.managers.set(stream, inner);
    const session = stream.session;
    if (session && !this.guarded.has(session)) {
      this.guarded.add(session);
      session.on("error", () => {});
      if (inner === this.inner) {
        const sessions = this.sessions;
        sessions.add(session);
        session.once("close", () => sessions.delete(session));
      } else {
        // Renewed while this call was connecting: the session serves this call, then closes.
        session.close();
      }
    }
    return stream;
  }

  notifyResponseByteRead(stream: http2.ClientHttp2Stream): void {
    (this.managers.get(stream) ?? this.inner).notifyResponseByteRead(stream);
  }

  /** New calls go over new connections made with `sessionOptions`; calls in flight finish on the old ones, which then close. */
  renew(sessionOptions: http2.SecureClientSessionOptions): void {
    const previous = this.sessions;
    this.inner = this.manager(sessionOptions);
    this.sessions = new Set();
    for (const session of previous) session.close();
  }

  /**
   * Closes its connections once their open calls are done (a graceful HTTP/2 close): for an
   * endpoint that left its downstream, which new calls no longer pick.
   */
  close(): void {
    const sessions = this.sessions;
    this.sessions = new Set();
    for (const session of sessions) session.close();
  }

  private manager(sessionOptions: http2.SecureClientSessionOptions | undefined): Http2SessionManager {
    const { idleTimeoutMs, pingIntervalMs, pingTimeoutMs } = this.timing;
    return new Http2SessionManager(
      this.url,
      { idleConnectionTimeoutMs: idleTimeoutMs, pingIntervalMs, pingTimeoutMs },
      sessionOptions,
    );
  }

  /**
   * A server that presents the wrong identity is as good as no server for this downstream:
   * Unavailable, like any failed TLS handshake in gRPC, naming what was expected and what came.
   */
  private refusedServer(err: unknown): ConnectError | undefined {
    let cause = err;
    for (let depth = 0; depth < MAX_CAUSES && cause instanceof Error; depth++, cause = cause.cause) {
      if (cause instanceof ServerIdentityError) {
        return new ConnectError(`${this.authority}: ${cause.message}`, Code.Unavailable, undefined, undefined, cause);
      }
    }
    return undefined;
  }
}
