import type { IncomingMessage } from "node:http";
import { BlockList, isIP } from "node:net";

/** The peers whose `X-Forwarded-For` the gateway believes: its own load balancers and proxies. */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  /** `entries`: IP addresses and CIDR ranges (`10.0.0.0/8`, `fd00::/8`); throws naming a bad one. */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [address = "", bits, ...rest] = entry.split("/");
      const family = isIP(address);
      const prefix = Number(bits);
      const maxPrefix = family === 6 ? 128 : 32;
      if (family === 0 || rest.length > 0) throw new Error(`"${entry}" is not an IP address or CIDR range`);
      if (bits === undefined) this.list.addAddress(address, family === 6 ? "ipv6" : "ipv4");
      else if (/^\d{1,3}$/.test(bits) && prefix <= maxPrefix)
        this.list.addSubnet(address, prefix, family === 6 ? "ipv6" : "ipv4");
      else throw new Error(`"${entry}" has an invalid prefix length (0 to ${maxPrefix})`);
    }
    this.empty = entries.length === 0;
  }

  has(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 6 ? "ipv6" : "ipv4");
  }
}

/**
 * The address a request came from, for rate limiting. The direct peer, unless the peer is a
 * trusted proxy: then the rightmost address of `X-Forwarded-For` that is not a trusted proxy
 * itself, which is the one the first trusted proxy saw. Entries left of it were written by the
 * client and could say anything. A header the trusted proxies did not write as addresses
 * (garbage where an address should be) falls back to the peer, which limits the whole proxy
 * rather than let the header choose the bucket.
 */
export function clientAddress(req: IncomingMessage, trusted: TrustedProxies): string {
  const peer = unmapped(req.socket.remoteAddress ?? "");
  if (trusted.empty || !trusted.has(peer)) return peer;
  const forwarded = req.headers["x-forwarded-for"];
  const hops = (Array.isArray(forwarded) ? forwarded.join(",") : (forwarded ?? ""))
    .split(",")
    .map((hop) => unmapped(hop.trim()))
    .filter((hop) => hop !== "");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) return peer;
    if (!trusted.has(hop)) return hop;
  }
  // Every hop is a trusted proxy: the leftmost is the farthest the chain can vouch for.
  return hops[0] ?? peer;
}

/** An IPv4 address as itself, not as the IPv4-mapped IPv6 address a dual-stack socket reports. */
function unmapped(address: string): string {
  return address.toLowerCase().startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
