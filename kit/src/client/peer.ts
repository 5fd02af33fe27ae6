/**
 * Where a downstream is: a peer variable (`TASKS_URL` …) holds a comma-separated list of
 * targets, each either an absolute URL (one endpoint) or `dns:///<host>:<port>`, gRPC's
 * resolver syntax, which stands for every address the host resolves to.
 */
export type PeerTarget =
  | { kind: "url" /** The URL's origin, e.g. `https://10.0.0.5:50051`. */; origin: string }
  | {
      kind: "dns";
      /** Host name without brackets, e.g. `tasks.hookmesh.svc.cluster.local` or `::1`. */
      host: string;
      port: number;
      /** `https:` under mTLS, `http:` in cleartext: DNS names no scheme. */
      protocol: "http:" | "https:";
    };

const DNS_PREFIX = "dns:///";

/** What is wrong with a peer value, without naming the variable (the caller does). */
export class PeerSyntaxError extends Error {
  override name = "PeerSyntaxError";
}

/**
 * The targets of a peer value. `protocol` is the scheme of `dns:///` targets' endpoints. A URL
 * must be http(s) with nothing after its origin but an optional `/`: a gRPC client calls
 * `/<service>/<method>` from the root.
 */
export function parsePeer(value: string, protocol: "http:" | "https:"): PeerTarget[] {
  const items = value.split(",").map((item) => item.trim());
  if (items.some((item) => item === "")) {
    throw new PeerSyntaxError(`expected a comma-separated list of URLs or dns:///host:port, got "${value}"`);
  }
  return items.map((item) => parseTarget(item, protocol));
}

function parseTarget(item: string, protocol: "http:" | "https:"): PeerTarget {
  if (item.startsWith("dns:")) {
    if (!item.startsWith(DNS_PREFIX)) {
      // gRPC's dns://<authority>/ names a DNS server to ask; only the system resolver is used here.
      throw new PeerSyntaxError(`expected dns:///<host>:<port> (no DNS server authority), got "${item}"`);
    }
    const endpoint = parseHostPort(item.slice(DNS_PREFIX.length));
    if (!endpoint) {
      throw new PeerSyntaxError(`expected dns:///<host>:<port> with a port from 1 to 65535, got "${item}"`);
    }
    return { kind: "dns", ...endpoint, protocol };
  }
  let url: URL;
  try {
    url = new URL(item);
  } catch {
    throw new PeerSyntaxError(`expected an absolute URL or dns:///<host>:<port>, got "${item}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new PeerSyntaxError(`expected an http: or https: URL or dns:///<host>:<port>, got "${item}"`);
  }
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    throw new PeerSyntaxError(`expected a URL with nothing after host and port, got "${item}"`);
  }
  return { kind: "url", origin: url.origin };
}

/**
 * `host:port` (an IPv6 address in brackets) as its host, without brackets, and its port from 1
 * to 65535; undefined when it is not that.
 */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) return undefined;
  return { host: match[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

/** The spelling of a target, as in a normalized peer value. */
export function targetText(target: PeerTarget): string {
  if (target.kind === "url") return target.origin;
  return `${DNS_PREFIX}${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`;
}

/**
 * One spelling per downstream ("http://tasks:8080/, dns:///x:1" and "http://tasks:8080,dns:///x:1"
 * are one), which keys its breakers, retry budget and metrics. A `dns:///` target's scheme is
 * the protocol given, which only decides what its endpoints are called.
 */
export function normalizePeer(value: string, protocol: "http:" | "https:" = "https:"): string {
  return parsePeer(value, protocol).map(targetText).join(",");
}

/**
 * The one URL a target stands for: its origin, or a `dns:///` target's host and port (which the
 * system resolver turns into one of its addresses), for whatever calls a single endpoint.
 */
export function targetUrl(target: PeerTarget): string {
  if (target.kind === "url") return target.origin;
  return endpointOrigin(target.protocol, target.host, target.port);
}

/** The origin of an endpoint at `address` (IPv4, IPv6 or a name) and `port`. */
export function endpointOrigin(protocol: "http:" | "https:", address: string, port: number): string {
  return new URL(`${protocol}//${address.includes(":") ? `[${address}]` : address}:${port}`).origin;
}
