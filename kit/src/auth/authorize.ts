import { type DescMethod, getOption, hasOption } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ServerReflection } from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { access } from "../../../gen/hookmesh/auth/v1/auth_pb.js";
import type { Logger } from "../logger.js";
import { type Peer, peerKey } from "./peer.js";
import { OperatorTokens } from "./tokens.js";

export interface AuthorizationOptions {
  /** Where refused calls are logged, with identity and method. */
  logger: Logger;
  /** Bearer tokens accepted from callers without a client certificate; none when omitted. */
  tokens?: OperatorTokens;
}

/** Services outside hookmesh's contracts, whose policy cannot be an option in their files. */
const OPEN_SERVICES: ReadonlySet<string> = new Set([Health.typeName]);
const ANY_IDENTITY_SERVICES: ReadonlySet<string> = new Set([
  ServerReflection.typeName,
  ServerReflectionV1alpha.typeName,
]);

/**
 * Enforces the `hookmesh.auth.v1.access` option of the called method. The caller is the peer
 * the server proved from its client certificate (`peerKey`) or, without one, the identity of a
 * valid `Authorization: Bearer` token, which is then set as `peerKey` for everything after.
 *
 * Health is open, because probes carry no credentials. Otherwise: no identity is
 * UNAUTHENTICATED; reflection is open to any identity; any other method is open to the
 * identities its option names, and every other identity, like every method without the option,
 * gets PERMISSION_DENIED (default deny).
 */
export function authorizationInterceptor(options: AuthorizationOptions): Interceptor {
  const tokens = options.tokens ?? OperatorTokens.none();
  const { logger } = options;
  return (next) => async (req) => {
    const service = req.service.typeName;
    if (OPEN_SERVICES.has(service)) return next(req);
    const peer = req.contextValues.get(peerKey) ?? bearerPeer(req.header, tokens);
    req.contextValues.set(peerKey, peer);
    if (ANY_IDENTITY_SERVICES.has(service)) return next(req);
    const procedure = `/${service}/${req.method.name}`;
    const allowed = allowedIdentities(req.method);
    if (allowed === undefined) {
      logger.error(
        { procedure, identity: peer.name },
        "method declares no hookmesh.auth.v1.access option, call denied",
      );
      throw new ConnectError(`${procedure} declares no access policy`, Code.PermissionDenied);
    }
    if (!allowed.has(peer.name)) {
      logger.warn({ procedure, identity: peer.name, peer: peer.id, via: peer.via }, "permission denied");
      throw new ConnectError(`identity "${peer.name}" may not call ${procedure}`, Code.PermissionDenied);
    }
    return next(req);
  };
}

/**
 * The identity of the call's bearer token; throws UNAUTHENTICATED when there is no valid one.
 * The token is never put into an error or a log line.
 */
function bearerPeer(header: Headers, tokens: OperatorTokens): Peer {
  const authorization = header.get("authorization");
  if (authorization === null) {
    throw new ConnectError(
      "no credentials: present a client certificate or an Authorization: Bearer token",
      Code.Unauthenticated,
    );
  }
  const token = /^Bearer +(\S+)$/i.exec(authorization.trim())?.[1];
  const name = token === undefined ? undefined : tokens.identify(token);
  if (name === undefined) throw new ConnectError("invalid bearer token", Code.Unauthenticated);
  return { id: `token:${name}`, name, via: "token" };
}

const policies = new WeakMap<DescMethod, ReadonlySet<string> | undefined>();

/** The identities the method's option names, or undefined without the option; read once per method. */
function allowedIdentities(method: DescMethod): ReadonlySet<string> | undefined {
  if (!policies.has(method)) {
    policies.set(method, hasOption(method, access) ? new Set(getOption(method, access).identities) : undefined);
  }
  return policies.get(method);
}
