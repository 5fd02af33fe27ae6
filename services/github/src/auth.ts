import type { KeyObject } from "node:crypto";
import { Code } from "@connectrpc/connect";
import {
  type Caller,
  type Credential,
  type Logger,
  type UnsignedRequest,
  type UpstreamClient,
  UpstreamError,
} from "@hookmesh/kit";
import { parseAppPrivateKey, signAppJwt } from "./app-jwt.js";
import { APP_ID_VARIABLE, APP_KEY_VARIABLE, TOKEN_VARIABLE } from "./config.js";
import { AuthPreconditionError, InvalidCredentialError, NoCredentialsError } from "./errors.js";
import { GITHUB_HEADERS } from "./upstream.js";

/** A GitHub App: its id (GITHUB_APP_ID, or its client id) and its private key. */
export interface GitHubApp {
  id: string;
  /** GITHUB_APP_PRIVATE_KEY (or `_FILE`), read at each signing, so a rotated key applies at once. */
  privateKey: Credential;
}

export interface GitHubAuthDeps {
  /** The client for GITHUB_API_URL; installation tokens are asked of the same API. */
  upstream: UpstreamClient;
  /** GITHUB_TOKEN: a personal (or any bearer) token, used when no App is configured. */
  token: Credential;
  /** When set, the App is used and the personal token ignored. */
  app?: GitHubApp;
  logger: Logger;
}

/** Which credentials calls use: a GitHub App's installation tokens, a personal token, or none. */
export type AuthMode = "app" | "token" | "none";

/** The Authorization header of one call, and the installation token behind it (App auth). */
export interface Authorization {
  header: string;
  installationId?: string;
  token?: string;
}

export interface InstallationToken {
  token: string;
  /** GitHub's `expires_at`, in ms since the epoch. */
  expiresAtMs: number;
}

/** How long before its `expires_at` a cached installation token is replaced: a call started with it has time to finish. */
const REFRESH_MARGIN_MS = 5 * 60_000;

/**
 * Where GitHub calls get their Authorization header. With a GitHub App: a JWT signed with the
 * App's key buys an installation access token per installation
 * (`POST /app/installations/{id}/access_tokens`), which is cached until shortly before it
 * expires; concurrent calls for one installation share one token request. With a personal
 * token: that token, as read now (it may have been rotated).
 */
export class GitHubAuth {
  private readonly cache = new Map<string, InstallationToken>();
  private readonly pending = new Map<string, Promise<InstallationToken>>();
  private parsedKey: { pem: string; key: KeyObject } | undefined;

  constructor(private readonly deps: GitHubAuthDeps) {}

  mode(): AuthMode {
    if (this.deps.app !== undefined) return "app";
    return this.deps.token.configured ? "token" : "none";
  }

  /** What keeps calls from reaching GitHub: neither a personal token nor an App configured. */
  missing(): NoCredentialsError | undefined {
    return this.mode() === "none"
      ? new NoCredentialsError(TOKEN_VARIABLE, `${APP_ID_VARIABLE} + ${APP_KEY_VARIABLE}`)
      : undefined;
  }

  /** The installation a call acts as (App auth), as a path segment; 0 is refused. */
  requireInstallation(installationId: bigint): string {
    if (installationId <= 0n) {
      throw new AuthPreconditionError(
        "repository.installation_id is required with GitHub App auth (GITHUB_APP_ID): the installation that has access to the repository",
      );
    }
    return installationId.toString();
  }

  /** The Authorization header for a call on a repository of `installationId` (ignored with a personal token). */
  async authorization(installationId: bigint, caller: Caller = {}): Promise<Authorization> {
    if (this.mode() !== "app") return { header: `Bearer ${this.deps.token.require()}` };
    const id = this.requireInstallation(installationId);
    const cached = this.cache.get(id);
    if (cached && cached.expiresAtMs - REFRESH_MARGIN_MS > Date.now()) {
      return { header: `Bearer ${cached.token}`, installationId: id, token: cached.token };
    }
    let pending = this.pending.get(id);
    if (!pending) {
      // Shared by every call that needs this installation's token meanwhile, so it is not tied
      // to the first caller's cancellation; the upstream client's attempt timeouts bound it.
      pending = this.request(id, undefined, { deadline: caller.deadline })
        .then((token) => {
          this.cache.set(id, token);
          return token;
        })
        .finally(() => this.pending.delete(id));
      pending.catch(() => {});
      this.pending.set(id, pending);
    }
    const { token } = await abortable(pending, caller.signal);
    return { header: `Bearer ${token}`, installationId: id, token };
  }

  /**
   * Forgets the installation token a call used after GitHub refused it (401: revoked, or the
   * App's access changed). True when there was one, so that a call with a new token may work.
   */
  invalidate(authorization: Authorization): boolean {
    const id = authorization.installationId;
    if (id === undefined) return false;
    if (this.cache.get(id)?.token === authorization.token) this.cache.delete(id);
    this.deps.logger.info({ installationId: id }, "installation token refused by GitHub; asking for a new one");
    return true;
  }

  /** The request that creates an installation token (body: the repositories and permissions it is limited to). */
  accessTokensRequest(installationId: bigint, body?: unknown): UnsignedRequest {
    // Creating a token twice is harmless (it only mints another), so it is retried like a read.
    return {
      method: "POST",
      path: `/app/installations/${installationId.toString()}/access_tokens`,
      body,
      idempotent: true,
    };
  }

  /** A new installation token limited by `body`, never cached: for CreateCloneToken. */
  createInstallationToken(installationId: bigint, body: unknown, caller: Caller = {}): Promise<InstallationToken> {
    return this.request(this.requireInstallation(installationId), body, caller);
  }

  /** The request that finds the App's installation on a repository. */
  installationLookupRequest(owner: string, repo: string): UnsignedRequest {
    return { method: "GET", path: `/repos/${owner}/${repo}/installation`, idempotent: true };
  }

  /**
   * The App's installation on a repository (`GET /repos/{owner}/{repo}/installation`, with the
   * App's JWT), for a clone token asked for a repository no event named the installation of.
   */
  async installationOf(owner: string, repo: string, caller: Caller = {}): Promise<bigint> {
    const app = this.deps.app!;
    let res;
    try {
      res = await this.deps.upstream.request({
        ...this.installationLookupRequest(owner, repo),
        headers: GITHUB_HEADERS,
        auth: `Bearer ${signAppJwt(app.id, this.key(app))}`,
        ...caller,
      });
    } catch (err) {
      if (err instanceof UpstreamError && err.status === 404) {
        throw new UpstreamError(
          Code.NotFound,
          `github: the GitHub App is not installed on ${owner}/${repo} (or the repository does not exist)`,
          404,
        );
      }
      throw err;
    }
    const id = (res.body as { id?: unknown } | null)?.id;
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id <= 0) {
      throw new UpstreamError(
        Code.Unknown,
        `github: unexpected answer to the installation lookup of ${owner}/${repo}`,
        res.status,
      );
    }
    return BigInt(id);
  }

  private async request(id: string, body: unknown, caller: Caller): Promise<InstallationToken> {
    const app = this.deps.app!;
    const jwt = signAppJwt(app.id, this.key(app));
    let res;
    try {
      res = await this.deps.upstream.request({
        ...this.accessTokensRequest(BigInt(id), body),
        headers: GITHUB_HEADERS,
        auth: `Bearer ${jwt}`,
        ...caller,
      });
    } catch (err) {
      throw explain(err, id);
    }
    const answer = (res.body ?? {}) as { token?: unknown; expires_at?: unknown };
    const expiresAtMs = typeof answer.expires_at === "string" ? Date.parse(answer.expires_at) : NaN;
    if (typeof answer.token !== "string" || answer.token === "" || Number.isNaN(expiresAtMs)) {
      throw new UpstreamError(
        Code.Unknown,
        `github: unexpected answer to the token request for installation ${id}`,
        res.status,
      );
    }
    this.deps.logger.debug(
      { installationId: id, expiresAt: answer.expires_at, scoped: body !== undefined },
      "installation token created",
    );
    return { token: answer.token, expiresAtMs };
  }

  /** The App's private key, parsed once per value of the credential. */
  private key(app: GitHubApp): KeyObject {
    const pem = app.privateKey.require();
    if (this.parsedKey?.pem !== pem) {
      try {
        this.parsedKey = { pem, key: parseAppPrivateKey(pem) };
      } catch (err) {
        throw new InvalidCredentialError(app.privateKey.variable, (err as Error).message);
      }
    }
    return this.parsedKey.key;
  }
}

/** A failed token request, said in terms an operator can act on. */
function explain(err: unknown, installationId: string): unknown {
  if (!(err instanceof UpstreamError)) return err;
  if (err.status === 401) {
    return new UpstreamError(
      Code.Unauthenticated,
      `github refused the GitHub App's JWT (check GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and this host's clock): ${err.message}`,
      err.status,
    );
  }
  if (err.status === 404) {
    return new UpstreamError(
      Code.NotFound,
      `github: GitHub App installation ${installationId} not found (is the App installed there?)`,
      err.status,
    );
  }
  return err;
}

/** `promise`, or Canceled as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(new UpstreamError(Code.Canceled, "github: canceled"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new UpstreamError(Code.Canceled, "github: canceled"));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
