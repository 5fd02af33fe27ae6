import { envOperatorTokens, type OperatorTokens } from "./auth/tokens.js";
import { type Env, envIdentity, envInsecure, envPort, envString, envUrl, type IdentityConfig } from "./config.js";
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
}

/**
 * The listening half of a service's configuration, checked as a whole: the bind address (loopback
 * by default, so a fresh start exposes nothing), the port, and the identity, which refuses
 * cleartext anywhere but on loopback and needs `https://` for every peer in `peers` (the URLs
 * the service calls, by the variable that set each), and the port's connection limits.
 */
export function envListen(
  env: Env,
  name: string,
  defaultPort: number,
  peers: Readonly<Record<string, string>> = {},
): ListenConfig {
  const prefix = name.toUpperCase();
  const host = envString(env, `${prefix}_HOST`, "127.0.0.1");
  return {
    host,
    port: envPort(env, `${prefix}_PORT`, defaultPort),
    identity: envIdentity(env, name, { listen: { [`${prefix}_HOST`]: host }, peers }),
    operatorTokens: envOperatorTokens(env),
    limits: envServerLimits(env, name),
  };
}

/**
 * The base URL of a peer service: `variable`, or the peer's default port on loopback, over
 * https (mTLS) unless `HOOKMESH_INSECURE=1` says cleartext.
 */
export function envPeerUrl(env: Env, variable: string, defaultPort: number): string {
  const scheme = envInsecure(env) ? "http" : "https";
  return envUrl(env, variable, `${scheme}://127.0.0.1:${defaultPort}`);
}
