import type { Peer } from "../auth/peer.js";

/** A SPIFFE trust domain: lowercase letters, digits, dots, dashes and underscores. */
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
/** An identity's path within its trust domain: segments of letters, digits, dots, dashes and underscores. */
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export function isTrustDomain(value: string): boolean {
  return TRUST_DOMAIN.test(value) && value.length <= 255;
}

/** A name such as `gateway` or `operator/alice`; `.` and `..` segments are not allowed (SPIFFE). */
export function isIdentityName(value: string): boolean {
  return value.split("/").every((segment) => SEGMENT.test(segment) && segment !== "." && segment !== "..");
}

/** `spiffe://<trust domain>/<name>`, e.g. `spiffe://hookmesh.local/gateway`. */
export function spiffeId(trustDomain: string, name: string): string {
  return `spiffe://${trustDomain}/${name}`;
}

/**
 * The `spiffe://` URIs among a certificate's subject alternative names, as Node.js lists them
 * (`X509Certificate.subjectAltName`, `PeerCertificate.subjectaltname`): `TYPE:value` entries
 * joined by ", ", where a value holding a delimiter is a JSON string with its commas escaped,
 * so splitting on ", " is unambiguous. Node's parser is used rather than an ASN.1 library
 * because this runs on every new connection and the library costs each process a noticeable
 * start-up time.
 */
export function spiffeIdsOf(subjectAltName: string | undefined): string[] {
  return (subjectAltName ?? "").split(", ").flatMap((entry) => {
    if (!entry.startsWith("URI:")) return [];
    const raw = entry.slice("URI:".length);
    let uri: unknown;
    try {
      uri = raw.startsWith('"') ? JSON.parse(raw) : raw;
    } catch {
      return [];
    }
    return typeof uri === "string" && uri.startsWith("spiffe://") ? [uri] : [];
  });
}

/**
 * The identity a verified certificate (given by its subject alternative names) proves within `trustDomain`. An X.509-SVID carries
 * exactly one SPIFFE id, so a certificate with none, several, or one from another trust
 * domain proves nothing here.
 */
export function peerFromCertificate(subjectAltName: string | undefined, trustDomain: string): Peer | undefined {
  const ids = spiffeIdsOf(subjectAltName);
  if (ids.length !== 1) return undefined;
  const id = ids[0]!;
  const prefix = `spiffe://${trustDomain}/`;
  if (!id.startsWith(prefix)) return undefined;
  const name = id.slice(prefix.length);
  return isIdentityName(name) ? { id, name, via: "mtls" } : undefined;
}

/** How a set of SPIFFE ids reads in an error message. */
export function describeIds(ids: readonly string[]): string {
  if (ids.length === 0) return "no SPIFFE id";
  return ids.length === 1 ? ids[0]! : `several SPIFFE ids (${ids.join(", ")})`;
}
