import { envOperatorTokens, type OperatorTokens } from "./auth/tokens.js";
import { normalizePeer, PeerSyntaxError } from "./client/peer.js";
import { ConfigError, type Env, envIdentity, envInsecure, envPort, envString, type IdentityConfig } from "./config.js";
import { envServerLimits, type ServerLimits } from "./limits.js";

/** Where a service listens and who it is there: what every service's config holds alike. */
export interface ListenConfig {
  /** `<NAME>_HOST`: 127.0.0.1 unless set; containers set 0.0.0.0. */
  host: string;
  /** `<NAME>_PORT`. */
  port: number;
  /** mTLS with the service's certificate, or cleartext on loopback (`HOOKMESH_INSECURE=1`). */
  identity: IdentityConfig;
  /** Bearer tokens accepted from callers without a client certificate (`HOOKMESH_OPERATOR_TOKENS_FILE`). */
  operatorTokens: OperatorTokens;
  /** What any one client may hold on the port: `<NAME>_SERVER_<LIMIT>`, else `HOOKMESH_SERVER_<LIMIT>`. */
  limits: ServerLimits;
  /** The admin port (`/metrics`, `/livez`, `/readyz`, cleartext HTTP): see `startAdminServer`. */
  admin: AdminListenConfig;
}

export interface AdminListenConfig {
  /** `<NAME>_ADMIN_HOST`: the service's `<NAME>_HOST` unless set, so a container's probes reach it where its callers do. */
  host: string;
  /** `<NAME>_ADMIN_PORT`: the service's port + 1000 unless set (gateway 51050, tasks 51051 …; a free one when the service's is 0); 0 picks a free port. */
  port: number;
}

/** How far a service's admin port lies from its gRPC port by default. */
export const ADMIN_PORT_OFFSET = 1000;

/**
 * The listening half of a service's configuration, checked as a whole: the bind address (loopback
 * by default, so a fresh start exposes nothing), the port, and the identity, which refuses
 * cleartext anywhere but on loopback and needs `https://` for every peer URL in `peers` (the peer
 * values the service calls, by the variable that set each), the port's connection limits, and the
 * admin port beside it.
 */
export function envListen(
  env: Env,
  name: string,
  defaultPort: number,
  peers: Readonly<Record<string, string>> = {},
): ListenConfig {
  const prefix = name.toUpperCase();
  const host = envString(env, `${prefix}_HOST`, "127.0.0.1");
  const port = envPort(env, `${prefix}_PORT`, defaultPort);
  return {
    host,
    port,
    identity: envIdentity(env, name, { listen: { [`${prefix}_HOST`]: host }, peers }),
    operatorTokens: envOperatorTokens(env),
    limits: envServerLimits(env, name),
    admin: {
      host: envString(env, `${prefix}_ADMIN_HOST`, host),
      port: adminPort(env, prefix, port),
    },
  };
}

/**
 * `<NAME>_ADMIN_PORT`, else the service's port + 1000 (a free one when the service's is: port 0
 * is for tests); a service port too high for that needs the variable.
 */
function adminPort(env: Env, prefix: string, port: number): number {
  const variable = `${prefix}_ADMIN_PORT`;
  const derived = port === 0 ? 0 : port + ADMIN_PORT_OFFSET;
  if (derived > 65535 && !env[variable]?.trim()) {
    throw new ConfigError(variable, `${prefix}_PORT ${port} + ${ADMIN_PORT_OFFSET} is no port; set ${variable}`);
  }
  return envPort(env, variable, derived);
}

/**
 * Where a peer service is: `variable`, or the peer's default port on loopback, over https (mTLS)
 * unless `HOOKMESH_INSECURE=1` says cleartext. The value is a comma-separated list of targets,
 * each an absolute URL (one endpoint, e.g. `https://10.0.0.5:50051`) or `dns:///<host>:<port>`
 * (every address the host resolves to, each an endpoint, over https or, in cleartext, http);
 * the client factory balances calls over the endpoints. Returned in one spelling per list
 * (origins, no spaces), which names the downstream in metrics and logs. A malformed target
 * names the variable; `envIdentity` checks each target's scheme and host.
 */
export function envPeer(env: Env, variable: string, defaultPort: number): string {
  const insecure = envInsecure(env);
  const value = envString(env, variable, `${insecure ? "http" : "https"}://127.0.0.1:${defaultPort}`);
  try {
    return normalizePeer(value, insecure ? "http:" : "https:");
  } catch (err) {
    if (err instanceof PeerSyntaxError) throw new ConfigError(variable, err.message);
    throw err;
  }
}
