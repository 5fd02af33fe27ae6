import { lookup } from "node:dns/promises";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import { connect, isIP, type Socket } from "node:net";
import type { Logger } from "@hookmesh/kit";
import { EgressAllowlist, isPublicAddress, normalizeHost } from "./egress-allowlist.js";

/** The addresses of a host name; injectable so that tests can point a name at a local server. */
export type ResolveHost = (host: string) => Promise<string[]>;

export const resolveWithDns: ResolveHost = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);

export interface EgressProxyOptions {
  /** The profile's `egress_hosts`. */
  hosts: readonly string[];
  logger: Logger;
  resolve?: ResolveHost;
}

type Decision = { allowed: true; address: string } | { allowed: false; reason: string };

/** Headers that belong to the hop to the proxy, not to the request it forwards. */
const hopHeaders = ["proxy-authorization", "proxy-connection", "connection", "keep-alive"];

/**
 * One run's allowlisting HTTP(S) proxy, on a Unix socket that is mounted into the run's
 * sandbox (which has no other way out). CONNECT tunnels carry HTTPS; absolute-URI requests
 * carry plain HTTP. Only the profile's hosts are reached, at the address the proxy resolved
 * itself (the agent's own name resolution never decides where a connection goes); anything
 * else is answered 403 and logged.
 */
export class EgressProxy {
  private readonly allowlist: EgressAllowlist;
  private readonly resolve: ResolveHost;
  private readonly tunnels = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly options: EgressProxyOptions,
  ) {
    this.allowlist = new EgressAllowlist(options.hosts);
    this.resolve = options.resolve ?? resolveWithDns;
    server.on("request", (req, res) => void this.forward(req, res));
    server.on("connect", (req, socket: Socket, head: Buffer) => void this.tunnel(req, socket, head));
  }

  static async listen(socketPath: string, options: EgressProxyOptions): Promise<EgressProxy> {
    const server = createServer();
    const proxy = new EgressProxy(server, options);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return proxy;
  }

  /** Stops listening and cuts every open connection: nothing of a run's traffic outlives it. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const socket of this.tunnels) socket.destroy();
    await closed;
  }

  /** Whether `host` may be reached, and at which address. */
  async decide(host: string): Promise<Decision> {
    const name = normalizeHost(host);
    const match = this.allowlist.match(name);
    if (match === undefined) return { allowed: false, reason: "not in the profile's egress_hosts" };
    let addresses: string[];
    if (isIP(name) !== 0) addresses = [name];
    else {
      try {
        addresses = await this.resolve(name);
      } catch {
        return { allowed: false, reason: "does not resolve" };
      }
    }
    if (addresses.length === 0) return { allowed: false, reason: "does not resolve" };
    // A name allowed by a wildcard could be pointed (by whoever controls its DNS) at the
    // worker's own network: only a name listed exactly may lead there.
    if (match === "wildcard" && !addresses.every(isPublicAddress)) {
      return { allowed: false, reason: "resolves to a loopback, private or link-local address" };
    }
    return { allowed: true, address: addresses[0]! };
  }

  private refuse(host: string, reason: string): void {
    this.options.logger.warn({ host, reason }, "egress refused");
  }

  private async tunnel(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    this.tunnels.add(client);
    client.once("close", () => this.tunnels.delete(client));
    client.on("error", () => client.destroy());
    const target = parseAuthority(req.url ?? "");
    if (target === undefined) {
      client.end("HTTP/1.1 400 Bad Request\r\n\r\n");
      return;
    }
    const decision = await this.decide(target.host);
    if (!decision.allowed) {
      this.refuse(target.host, decision.reason);
      client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    const upstream = connect(target.port, decision.address);
    this.tunnels.add(upstream);
    upstream.once("close", () => {
      this.tunnels.delete(upstream);
      client.destroy();
    });
    client.once("close", () => upstream.destroy());
    upstream.once("error", () => {
      if (!client.destroyed) client.end("HTTP/1.1 502 Bad Gateway\r\n\r\n");
    });
    upstream.once("connect", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
  }

  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      res.writeHead(400).end("absolute http:// URL expected\n");
      return;
    }
    if (url.protocol !== "http:") {
      res.writeHead(400).end("only http:// is forwarded; use CONNECT for https\n");
      return;
    }
    const decision = await this.decide(url.hostname);
    if (!decision.allowed) {
      this.refuse(url.hostname, decision.reason);
      res.writeHead(403).end(`${url.hostname} is not allowed: ${decision.reason}\n`);
      return;
    }
    const headers: Record<string, string | string[] | undefined> = { ...req.headers, host: url.host };
    for (const name of hopHeaders) delete headers[name];
    const upstream = request({
      host: decision.address,
      port: Number(url.port || 80),
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
    });
    upstream.once("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.once("error", () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    res.once("close", () => upstream.destroy());
    req.pipe(upstream);
  }
}

/** `host:port` of a CONNECT request (`[v6]:port` for IPv6); undefined when malformed. */
export function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(authority);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: normalizeHost(match[1]!), port };
}
