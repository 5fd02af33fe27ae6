import type * as http2 from "node:http2";
import { Http2SessionManager, type createGrpcTransport } from "@connectrpc/connect-node";

type SessionManager = NonNullable<Parameters<typeof createGrpcTransport>[0]["sessionManager"]>;

/**
 * connect-node's Http2SessionManager, with every session it opens given an `error` listener
 * of its own. When a peer sends GOAWAY to an idle connection (as a hookmesh service does on
 * graceful shutdown), the manager destroys the session with an error that Node.js emits only
 * once the socket has closed; if a new call has moved the manager on by then, it has removed
 * its listeners and the error would crash the process (connectrpc/connect-es#1768). The
 * manager still sees and handles every error while it listens; this only keeps the late one
 * from becoming an uncaught exception.
 */
export class GuardedSessionManager implements SessionManager {
  private readonly inner: Http2SessionManager;
  private readonly guarded = new WeakSet<http2.Http2Session>();

  constructor(url: string) {
    this.inner = new Http2SessionManager(url);
  }

  get authority(): string {
    return this.inner.authority;
  }

  async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await this.inner.request(...args);
    const session = stream.session;
    if (session && !this.guarded.has(session)) {
      this.guarded.add(session);
      session.on("error", () => {});
    }
    return stream;
  }

  notifyResponseByteRead(stream: http2.ClientHttp2Stream): void {
    this.inner.notifyResponseByteRead(stream);
  }
}
