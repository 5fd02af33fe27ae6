import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import {
  type Caller,
  InvalidRequestError,
  type Logger,
  type ProviderCalls,
  type UnsignedRequest,
  type UpstreamClient,
  UpstreamError,
  type UpstreamResponse,
} from "@hookmesh/kit";
import {
  type AddReactionResponse,
  AddReactionResponseSchema,
  CommentSchema,
  type CreateCloneTokenResponse,
  CreateCloneTokenResponseSchema,
  type CreateCommentResponse,
  CreateCommentResponseSchema,
  type DeleteCommentResponse,
  DeleteCommentResponseSchema,
  type GetIssueResponse,
  GetIssueResponseSchema,
  type GetPullRequestResponse,
  GetPullRequestResponseSchema,
  type GetRepositoryPermissionResponse,
  GetRepositoryPermissionResponseSchema,
  IssueSchema,
  type PublishChangesResponse,
  PullRequestSchema,
  ReactionTarget,
  type UpdateCommentResponse,
  UpdateCommentResponseSchema,
} from "../../../gen/hookmesh/github/v1/github_pb.js";
import type { GitHubAuth } from "./auth.js";
import { AuthPreconditionError } from "./errors.js";
import { type PublishInput, publishChanges } from "./publish.js";
import { reactionId, toComment, toIssue, toPullRequest } from "./resources.js";
import { GITHUB_HEADERS, webOrigin } from "./upstream.js";

/** The reactions GitHub accepts. */
export const REACTIONS: readonly string[] = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"];

/** Where on GitHub: `RepositoryRef`. */
export interface RepositoryInput {
  owner: string;
  repo: string;
  /** The App installation with access to the repository; ignored with a personal token. */
  installationId: bigint;
}

export interface GitHubApiDeps {
  /** The client for GITHUB_API_URL, with `githubPolicy`. */
  upstream: UpstreamClient;
  auth: GitHubAuth;
  /** Live or dry run, and CreateComment once per idempotency key. */
  calls: ProviderCalls;
  logger: Logger;
}

/**
 * GitHub's REST API as hookmesh uses it: comment on an issue or pull request (create, edit in
 * place, delete), react, read an issue or pull request, and mint a read-only token to clone a
 * repository. Paths are relative to GITHUB_API_URL, so GitHub Enterprise Server's
 * `https://{host}/api/v3` works as api.github.com does.
 */
export class GitHubApi {
  constructor(private readonly deps: GitHubApiDeps) {}

  /**
   * Comments on an issue or pull request. With an idempotency key the first result is stored,
   * and a call with the same key gets it back (`call.replayed`) instead of a second comment; a
   * call made while the first is in flight waits for its result.
   */
  async createComment(
    input: { repository?: RepositoryInput; number: bigint; body: string; idempotencyKey?: string },
    caller: Caller = {},
  ): Promise<CreateCommentResponse> {
    const { repository, path } = this.repository(input.repository);
    const number = positive(input.number, "number");
    requireBody(input.body);
    const request: UnsignedRequest = {
      method: "POST",
      path: `${path}/issues/${number}/comments`,
      body: { body: input.body },
      idempotent: false,
    };
    return this.deps.calls.create(request, caller, (caller) => this.send(repository, request, caller), {
      rpc: "createComment",
      idempotencyKey: input.idempotencyKey ?? "",
      schema: CreateCommentResponseSchema,
      respond: (created) =>
        create(CreateCommentResponseSchema, {
          comment: created.dryRun
            ? create(CommentSchema, { id: created.id, body: input.body })
            : toComment(created.answer.body),
          call: created.call,
        }),
    });
  }

  /** Replaces a comment's body (issue and pull request conversation comments alike). */
  async updateComment(
    input: { repository?: RepositoryInput; commentId: bigint; body: string },
    caller: Caller = {},
  ): Promise<UpdateCommentResponse> {
    const { repository, path } = this.repository(input.repository);
    const commentId = positive(input.commentId, "comment_id");
    requireBody(input.body);
    const request: UnsignedRequest = {
      method: "PATCH",
      path: `${path}/issues/comments/${commentId}`,
      body: { body: input.body },
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(repository, request, caller));
    return create(UpdateCommentResponseSchema, {
      comment: sent.dryRun
        ? create(CommentSchema, { id: input.commentId, body: input.body })
        : toComment(sent.answer.body),
      call: sent.call,
    });
  }

  /** Deletes a comment; one already gone (404) counts as deleted. */
  async deleteComment(
    input: { repository?: RepositoryInput; commentId: bigint },
    caller: Caller = {},
  ): Promise<DeleteCommentResponse> {
    const { repository, path } = this.repository(input.repository);
    const commentId = positive(input.commentId, "comment_id");
    const request: UnsignedRequest = {
      method: "DELETE",
      path: `${path}/issues/comments/${commentId}`,
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, async (caller) => {
      try {
        await this.send(repository, request, caller);
      } catch (err) {
        if (!(err instanceof UpstreamError && err.status === 404)) throw err;
        this.deps.logger.debug({ commentId }, "comment already gone");
      }
    });
    return create(DeleteCommentResponseSchema, { call: sent.call });
  }

  /**
   * Reacts to an issue or pull request, or to an issue comment. GitHub answers 201 for a new
   * reaction and 200 with the existing one when this identity already reacted so: either way
   * there is one reaction, so the call is safe to repeat.
   */
  async addReaction(
    input: { repository?: RepositoryInput; target: ReactionTarget; number: bigint; commentId: bigint; content: string },
    caller: Caller = {},
  ): Promise<AddReactionResponse> {
    const { repository, path } = this.repository(input.repository);
    const content = input.content.trim();
    if (!REACTIONS.includes(content))
      throw new InvalidRequestError(
        `content must be one of ${REACTIONS.join(", ")}; got "${content.slice(0, 32)}"`,
        "content",
      );
    let on: string;
    if (input.target === ReactionTarget.ISSUE) on = `issues/${positive(input.number, "number")}`;
    else if (input.target === ReactionTarget.ISSUE_COMMENT)
      on = `issues/comments/${positive(input.commentId, "comment_id")}`;
    else
      throw new InvalidRequestError(
        "target is required: REACTION_TARGET_ISSUE (with number) or REACTION_TARGET_ISSUE_COMMENT (with comment_id)",
        "target",
      );
    const request: UnsignedRequest = {
      method: "POST",
      path: `${path}/${on}/reactions`,
      body: { content },
      idempotent: true,
    };
    // GitHub keeps one reaction per identity and content, so there is no key to remember it by.
    return this.deps.calls.create(request, caller, (caller) => this.send(repository, request, caller), {
      rpc: "addReaction",
      idempotencyKey: "",
      schema: AddReactionResponseSchema,
      respond: (created) =>
        create(AddReactionResponseSchema, {
          reactionId: created.dryRun ? created.id : reactionId(created.answer.body),
          call: created.call,
        }),
    });
  }

  /** An issue; a pull request is also an issue (then `pull_request` is true). */
  async getIssue(
    input: { repository?: RepositoryInput; number: bigint },
    caller: Caller = {},
  ): Promise<GetIssueResponse> {
    const { repository, path } = this.repository(input.repository);
    const request: UnsignedRequest = {
      method: "GET",
      path: `${path}/issues/${positive(input.number, "number")}`,
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(repository, request, caller));
    return create(GetIssueResponseSchema, {
      issue: sent.dryRun
        ? create(IssueSchema, { number: input.number, title: this.deps.calls.dryRunText })
        : toIssue(sent.answer.body),
      call: sent.call,
    });
  }

  async getPullRequest(
    input: { repository?: RepositoryInput; number: bigint },
    caller: Caller = {},
  ): Promise<GetPullRequestResponse> {
    const { repository, path } = this.repository(input.repository);
    const request: UnsignedRequest = {
      method: "GET",
      path: `${path}/pulls/${positive(input.number, "number")}`,
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(repository, request, caller));
    return create(GetPullRequestResponseSchema, {
      pullRequest: sent.dryRun
        ? create(PullRequestSchema, { number: input.number, title: this.deps.calls.dryRunText })
        : toPullRequest(sent.answer.body),
      call: sent.call,
    });
  }

  /** A person's permission on the repository: GitHub's base permission and their role. */
  async getRepositoryPermission(
    input: { repository?: RepositoryInput; login: string },
    caller: Caller = {},
  ): Promise<GetRepositoryPermissionResponse> {
    const { repository, path } = this.repository(input.repository);
    const request: UnsignedRequest = {
      method: "GET",
      path: `${path}/collaborators/${pathSegment(input.login, "login")}/permission`,
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(repository, request, caller));
    if (sent.dryRun) return create(GetRepositoryPermissionResponseSchema, { call: sent.call });
    const answer = sent.answer.body as { permission?: unknown; role_name?: unknown } | null;
    return create(GetRepositoryPermissionResponseSchema, {
      permission: typeof answer?.permission === "string" ? answer.permission : "",
      roleName: typeof answer?.role_name === "string" ? answer.role_name : "",
      call: sent.call,
    });
  }

  /**
   * A new installation token limited to reading this one repository's contents, and the URL
   * that clones with it. GitHub App auth only: a personal token cannot be narrowed, and would
   * hand the worker a credential that can write everywhere its owner can. Without an
   * installation id (tasks from Slack, Jira, Sentry) the App's installation on the repository is
   * looked up; with one (a GitHub event's), GitHub refuses (422) a repository outside it, which
   * is answered PERMISSION_DENIED. A dry run answers no token and the anonymous clone URL, which
   * still clones a public repository.
   */
  async createCloneToken(
    input: { repository?: RepositoryInput },
    caller: Caller = {},
  ): Promise<CreateCloneTokenResponse> {
    const { repository } = this.repository(input.repository, { installation: "optional" });
    const { auth, calls } = this.deps;
    if (auth.mode() === "token") {
      throw new AuthPreconditionError(
        "CreateCloneToken needs GitHub App auth (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY): a personal token (GITHUB_TOKEN) cannot be limited to one repository",
      );
    }
    const { owner, repo, installationId } = repository;
    const body = { repositories: [repo], permissions: { contents: "read" } };
    const request =
      installationId > 0n
        ? auth.accessTokensRequest(installationId, body)
        : auth.installationLookupRequest(owner, repo);
    const sent = await calls.send(request, caller, async (caller) => {
      const installation = installationId > 0n ? installationId : await auth.installationOf(owner, repo, caller);
      try {
        return await auth.createInstallationToken(installation, body, caller);
      } catch (err) {
        if (!(err instanceof UpstreamError && err.status === 422)) throw err;
        throw new UpstreamError(
          Code.PermissionDenied,
          `github: ${owner}/${repo} is not a repository of installation ${installation} (or does not exist)`,
          422,
        );
      }
    });
    if (sent.dryRun)
      return create(CreateCloneTokenResponseSchema, {
        token: "",
        cloneUrl: this.cloneUrl(repository),
        call: sent.call,
      });
    return create(CreateCloneTokenResponseSchema, {
      token: sent.answer.token,
      expireTime: timestampFromMs(sent.answer.expiresAtMs),
      cloneUrl: this.cloneUrl(repository, sent.answer.token),
      call: sent.call,
    });
  }

  /** Publishes a run's changes as a commit on a branch and, for a new branch, its pull request (see publish.ts). */
  async publishChanges(
    input: PublishInput & { repository?: RepositoryInput },
    caller: Caller = {},
  ): Promise<PublishChangesResponse> {
    const { repository, path } = this.repository(input.repository);
    const { upstream, calls } = this.deps;
    return publishChanges(
      {
        path,
        owner: repository.owner,
        upstream,
        calls,
        send: (request, caller) => this.send(repository, request, caller),
      },
      input,
      caller,
    );
  }

  /**
   * One request to GitHub, with the installation's token (App auth) or the personal token. A
   * 401 on an installation token means it was revoked or the App's access changed; GitHub acts
   * on nothing it answers 401 to, so even a create is sent once more, with a new token. The
   * caller's deadline covers the token requests too.
   */
  private async send(repository: RepositoryInput, req: UnsignedRequest, caller: Caller): Promise<UpstreamResponse> {
    const { auth, upstream } = this.deps;
    const authorization = await auth.authorization(repository.installationId, caller);
    try {
      return await upstream.request({ ...req, headers: GITHUB_HEADERS, auth: authorization.header, ...caller });
    } catch (err) {
      if (!(err instanceof UpstreamError && err.status === 401 && auth.invalidate(authorization))) throw err;
      const renewed = await auth.authorization(repository.installationId, caller);
      return await upstream.request({ ...req, headers: GITHUB_HEADERS, auth: renewed.header, ...caller });
    }
  }

  /**
   * The repository's `/repos/{owner}/{repo}` path, after checking both names, and, with App
   * auth, that the call names the installation it acts as.
   */
  private repository(
    repository: RepositoryInput | undefined,
    { installation }: { installation: "required" | "optional" } = { installation: "required" },
  ): { repository: RepositoryInput; path: string } {
    if (repository === undefined) throw new InvalidRequestError("repository is required", "repository");
    const owner = pathSegment(repository.owner, "repository.owner");
    const repo = pathSegment(repository.repo.replace(/\.git$/, ""), "repository.repo");
    if (this.deps.auth.mode() === "app" && installation === "required")
      this.deps.auth.requireInstallation(repository.installationId);
    return { repository: { ...repository, owner, repo }, path: `/repos/${owner}/${repo}` };
  }

  /** `https://x-access-token:{token}@{host}/{owner}/{repo}.git`, or without credentials. */
  private cloneUrl(repository: RepositoryInput, token?: string): string {
    const { protocol, host } = webOrigin(this.deps.upstream.url(""));
    const credentials = token === undefined ? "" : `x-access-token:${encodeURIComponent(token)}@`;
    return `${protocol}//${credentials}${host}/${repository.owner}/${repository.repo}.git`;
  }
}

/** An owner or repository name as a path segment: GitHub's names, nothing that could change the path. */
function pathSegment(value: string, field: string): string {
  const name = value.trim();
  if (name === "") throw new InvalidRequestError(`${field} is required`, field);
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "." || name === "..") {
    throw new InvalidRequestError(`${field} is not a GitHub name: "${name.slice(0, 100)}"`, field);
  }
  return name;
}

function positive(value: bigint, field: string): string {
  if (value <= 0n) throw new InvalidRequestError(`${field} is required (a positive number)`, field);
  return value.toString();
}

function requireBody(body: string): void {
  if (body.trim() === "") throw new InvalidRequestError("body is required", "body");
}
