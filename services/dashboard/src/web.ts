import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  authorizationInterceptor,
  createLimitedHttpServer,
  DEFAULT_HTTP_LIMITS,
  type ErrorMapper,
  type HttpLimits,
  type Logger,
  listenHttp,
  peerKey,
  serverCallInterceptor,
} from "@hookmesh/kit";
import { browserActorKey } from "./actor.js";
import type { SignIns } from "./sign-in.js";

export const SESSION_COOKIE = "hookmesh_session";

/**
 * The page's policy: everything from this origin, nothing inline, nothing from elsewhere; the
 * UI is bundled whole, so it needs no CDN and works offline.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".webmanifest": "application/manifest+json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".wasm": "application/wasm",
};

export interface WebOptions {
  /** DashboardService's routes, served to signed-in browsers under `/api/`. */
  routes: (router: ConnectRouter) => void;
  signIns: SignIns;
  logger: Logger;
  /** Maps the read model's failures to wire errors, as on the gRPC port. */
  mapError?: ErrorMapper;
  /** The built UI: index.html and its assets. */
  webDir: string;
  /**
   * The dashboard's web address: its origin (and `allowedOrigins`) may call the API. A port 0
   * in it becomes the port listened on, for tests.
   */
  site: Site;
  allowedOrigins?: readonly string[];
  sessionTtlMs: number;
  limits?: HttpLimits;
}

/** The dashboard's public web address, shared by the web server and the sign-in links. */
export interface Site {
  publicUrl: string;
}

export interface WebServer {
  server: http.Server;
  listen(port: number, host: string): Promise<AddressInfo>;
  close(graceMs: number): Promise<void>;
}

/**
 * The web port: the UI's files (with the SPA's routes falling back to index.html), sign-in
 * (`GET /login?token=`), sign-out (`POST /logout`) and DashboardService over the Connect
 * protocol at `/api/`, for browsers with a session cookie only. Every call's Origin must be
 * the dashboard's own (the cookie is SameSite=Strict too), so another site cannot act through
 * a signed-in browser; the Host must be one of the dashboard's names, so a DNS-rebound name
 * cannot read it either.
 */
export function createWebServer(options: WebOptions): WebServer {
  const { logger, signIns } = options;
  const { site } = options;
  let origins = new Set<string>();
  let hosts = new Set<string>();
  const trust = () => {
    origins = new Set([...originsOf(site.publicUrl), ...(options.allowedOrigins ?? [])]);
    hosts = new Set([...origins].map((origin) => new URL(origin).host));
  };
  trust();
  const secure = new URL(site.publicUrl).protocol === "https:";

  const sessionInterceptor: Interceptor = (next) => async (req) => {
    const origin = req.header.get("origin");
    if (origin === null || !origins.has(origin)) {
      throw new ConnectError("cross-origin call refused", Code.PermissionDenied);
    }
    const sessionId = cookieOf(req.header.get("cookie"), SESSION_COOKIE);
    const session = sessionId === undefined ? undefined : await signIns.session(sessionId);
    if (!session) {
      throw new ConnectError("not signed in: open the link `npx hookmesh dashboard` prints", Code.Unauthenticated);
    }
    // The session acts as the operator who signed it in, under the contracts' authorization.
    req.contextValues.set(peerKey, { id: `session:${session.actor}`, name: "operator", via: "token" });
    req.contextValues.set(browserActorKey, session.actor);
    return next(req);
  };
  const api = connectNodeAdapter({
    routes: options.routes,
    requestPathPrefix: "/api",
    interceptors: [
      serverCallInterceptor(logger, options.mapError),
      sessionInterceptor,
      authorizationInterceptor({ logger }),
    ],
    readMaxBytes: 1024 * 1024,
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    if (!hosts.has(req.headers.host ?? "")) return send(res, 421, "unknown host name\n");
    const url = new URL(req.url ?? "/", "http://dashboard");
    if (url.pathname.startsWith("/api/")) return api(req, res);
    if (url.pathname === "/login" && req.method === "GET" && url.searchParams.has("token")) {
      const redeemed = await signIns.redeem(url.searchParams.get("token") ?? "");
      if (!redeemed) return redirect(res, "/login?error=expired");
      logger.info({ actor: redeemed.session.actor }, "browser signed in");
      res.setHeader("set-cookie", sessionCookie(redeemed.sessionId, Math.floor(options.sessionTtlMs / 1000), secure));
      return redirect(res, "/");
    }
    if (url.pathname === "/logout") {
      if (req.method !== "POST") return send(res, 405, "method not allowed\n", { allow: "POST" });
      if (!origins.has(req.headers.origin ?? "")) return send(res, 403, "cross-origin request refused\n");
      const sessionId = cookieOf(req.headers.cookie ?? null, SESSION_COOKIE);
      if (sessionId !== undefined) await signIns.end(sessionId);
      res.setHeader("set-cookie", sessionCookie("", 0, secure));
      return send(res, 204, "");
    }
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "method not allowed\n", { allow: "GET" });
    return serveStatic(options.webDir, url.pathname, req, res);
  }

  const limits = options.limits ?? DEFAULT_HTTP_LIMITS;
  const server = createLimitedHttpServer(limits, logger, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err, path: req.url?.split("?")[0] }, "web request failed");
      if (!res.headersSent) send(res, 500, "internal error\n");
      else res.destroy();
    });
  });
  return {
    server,
    async listen(port, host) {
      const address = await listenHttp(server, port, host);
      const configured = new URL(site.publicUrl);
      if (configured.port === "0") {
        configured.port = String(address.port);
        site.publicUrl = configured.href.replace(/\/+$/, "");
        trust();
      }
      logger.info({ port: address.port, host: address.address, url: site.publicUrl }, "web UI listening");
      return address;
    },
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Open watches are long-lived streams: they get the grace, then are cut.
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(force);
    },
  };
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  // The sign-in URL carries its token: no page may pass its address on.
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/**
 * A file of the UI, or index.html for any other path without an extension (the SPA's own
 * routes: `/tasks/<id>`, `/login`, …). Hashed assets are cached for good; index.html never, so
 * a new build is picked up at the next load.
 */
async function serveStatic(
  root: string,
  pathname: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return send(res, 400, "bad path\n");
  }
  const relative = normalize(decoded).replace(/^([/\\])+/, "");
  const inside = relative === "" || relative === "." ? "index.html" : relative;
  if (inside.split(/[/\\]/).includes("..") || decoded.includes("\0")) return send(res, 404, "not found\n");
  let file = join(root, inside);
  let info = await stat(file).catch(() => undefined);
  if (info?.isDirectory()) {
    file = join(file, "index.html");
    info = await stat(file).catch(() => undefined);
  }
  if (!info?.isFile()) {
    if (extname(inside) !== "") return send(res, 404, "not found\n");
    file = join(root, "index.html");
    info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) {
      return send(res, 503, `the web UI is not built: no ${file} (build services/dashboard/web)\n`);
    }
  }
  const immutable = file.includes(`${sep}assets${sep}`);
  res.writeHead(200, {
    "content-type": CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
    "content-length": info.size,
    "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
  });
  if (req.method === "HEAD") return void res.end();
  createReadStream(file).pipe(res);
}

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(body);
}

function redirect(res: http.ServerResponse, location: string): void {
  res.writeHead(303, { location, "cache-control": "no-store" });
  res.end();
}

function sessionCookie(value: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSeconds}${secure ? "; Secure" : ""}`;
}

const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];

/** The URL's origin; for a loopback address, each of its loopback names at that port too. */
function originsOf(url: string): string[] {
  const parsed = new URL(url);
  if (!LOOPBACK_NAMES.includes(parsed.hostname)) return [parsed.origin];
  return LOOPBACK_NAMES.map((name) => `${parsed.protocol}//${name}${parsed.port === "" ? "" : `:${parsed.port}`}`);
}

/** The value of cookie `name` in a Cookie header. */
export function cookieOf(header: string | null, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return value === "" ? undefined : value;
    }
  }
  return undefined;
}
