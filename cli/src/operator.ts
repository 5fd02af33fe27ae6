import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  clientTlsOptions,
  createLogger,
  devIdentityFiles,
  type Env,
  envHome,
  envIdentity,
  envInsecure,
  envString,
  envTrustDomain,
  openIdentity,
  readConfigFile,
  serverIdentityCheck,
  spiffeId,
} from "@hookmesh/kit";
import { type ServiceEntry, serviceUrl } from "./services.js";

/** How the CLI reaches the mesh's gRPC ports as an operator. */
export interface OperatorConnection {
  /** The transport to `service` (at `baseUrl`, one of its replicas, else where `serviceUrl` says), which must prove that it is that service. */
  transport(service: ServiceEntry, baseUrl?: string): Transport;
  /** How the CLI identifies itself, for messages. */
  readonly as: string;
  close(): void;
}

/**
 * The operator's connection, found with no flags: `HOOKMESH_TOKEN` (a bearer token, over TLS
 * trusting the mesh's CA) if set; else the operator certificate (`OPERATOR_TLS_CERT_FILE` /
 * `_KEY_FILE` / `_CA_FILE`, which `--cert`, `--key` and `--ca` set, or the development one under
 * `HOOKMESH_HOME`); cleartext only with `HOOKMESH_INSECURE=1`, as the services themselves.
 * Either way every service must present its own SPIFFE id.
 */
export function operatorConnection(env: Env): OperatorConnection {
  if (envInsecure(env)) {
    return {
      as: "nobody (HOOKMESH_INSECURE=1: cleartext)",
      transport: (service, baseUrl = serviceUrl(service, env)) => createGrpcTransport({ baseUrl }),
      close() {},
    };
  }
  const trustDomain = envTrustDomain(env);
  const token = env.HOOKMESH_TOKEN?.trim();
  if (token) {
    const caFile = envString(env, "OPERATOR_TLS_CA_FILE", devIdentityFiles(envHome(env), "operator").caFile);
    const ca = readConfigFile("OPERATOR_TLS_CA_FILE", caFile);
    const bearer: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    return {
      as: "the bearer token in HOOKMESH_TOKEN",
      transport: (service, baseUrl = serviceUrl(service, env)) =>
        createGrpcTransport({
          baseUrl,
          interceptors: [bearer],
          nodeOptions: { ca, checkServerIdentity: serverIdentityCheck(spiffeId(trustDomain, service.name)) },
        }),
      close() {},
    };
  }
  // The identity's own log lines (loaded, rotated) are for services, not for a command's output.
  const identity = openIdentity(envIdentity(env, "operator"), createLogger({ service: "hookmesh", level: "warn" }))!;
  return {
    as: identity.id,
    transport: (service, baseUrl = serviceUrl(service, env)) =>
      createGrpcTransport({
        baseUrl,
        nodeOptions: clientTlsOptions(identity, spiffeId(identity.trustDomain, service.name)),
      }),
    close: () => identity.close(),
  };
}

/**
 * Takes `--cert FILE`, `--key FILE` and `--ca FILE` out of `args` (anywhere on the line) into
 * the operator's variables, so that flags and environment mean the same.
 */
export function identityFlags(args: readonly string[], env: Env): { args: string[]; env: Env } {
  const variables: Record<string, string> = {
    "--cert": "OPERATOR_TLS_CERT_FILE",
    "--key": "OPERATOR_TLS_KEY_FILE",
    "--ca": "OPERATOR_TLS_CA_FILE",
  };
  const rest: string[] = [];
  const set: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    const variable = variables[flag];
    if (variable === undefined) {
      rest.push(arg);
      continue;
    }
    const value = inline ?? args[++i];
    if (!value) throw new Error(`${flag} needs a file`);
    set[variable] = value;
  }
  return { args: rest, env: { ...env, ...set } };
}
