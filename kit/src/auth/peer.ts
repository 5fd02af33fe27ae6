import { createContextKey } from "@connectrpc/connect";

/** Who is calling, as the transport proved it. */
export interface Peer {
  /** The SPIFFE id, e.g. `spiffe://hookmesh.local/gateway`; for a bearer token, `token:<name>`. */
  id: string;
  /** The identity's name within its trust domain: the path after the domain, e.g. `gateway` or `operator`. */
  name: string;
  /** How the identity was proved: a verified client certificate, or an operator bearer token. */
  via: "mtls" | "token";
}

/**
 * The caller's identity, set by the server for every call from a verified client certificate
 * (undefined without one); the authorization interceptor sets it from a bearer token instead.
 */
export const peerKey = createContextKey<Peer | undefined>(undefined, { description: "the caller's verified identity" });
