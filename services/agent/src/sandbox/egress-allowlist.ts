import { BlockList, isIP } from "node:net";

/** How a host name matched a profile's `egress_hosts`. */
export type HostMatch = "exact" | "wildcard";

/**
 * A profile's `egress_hosts`: exact names and `*.example.com` wildcards (one leading label,
 * which matches any subdomain but not `example.com` itself). IP literals match only when
 * listed exactly, so a wildcard can never stand for an address.
 */
export class EgressAllowlist {
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];

  constructor(hosts: readonly string[]) {
    for (const host of hosts) {
      const name = normalizeHost(host);
      if (name.startsWith("*.") && name.length > 2) this.suffixes.push(name.slice(1));
      else if (name !== "") this.exact.add(name);
    }
  }

  match(host: string): HostMatch | undefined {
    const name = normalizeHost(host);
    if (this.exact.has(name)) return "exact";
    if (isIP(name) !== 0) return undefined;
    return this.suffixes.some((suffix) => name.endsWith(suffix)) ? "wildcard" : undefined;
  }
}

/** Lowercase, without a trailing dot or IPv6 brackets: the form names are compared in. */
export function normalizeHost(host: string): string {
  let name = host.trim().toLowerCase();
  if (name.startsWith("[") && name.endsWith("]")) name = name.slice(1, -1);
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

const nonPublic = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 3],
] as const) {
  nonPublic.addSubnet(network, prefix, "ipv4");
}
for (const [network, prefix] of [
  ["::", 127],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const) {
  nonPublic.addSubnet(network, prefix, "ipv6");
}

/**
 * Whether an address is on the public internet: loopback, private, link-local (cloud metadata
 * at 169.254.169.254), carrier-grade NAT, multicast and unspecified addresses are not, nor
 * their IPv4-mapped IPv6 forms.
 */
export function isPublicAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isPublicAddress(mapped[1]!);
  const family = isIP(address);
  if (family === 0) return false;
  return !nonPublic.check(address, family === 4 ? "ipv4" : "ipv6");
}
