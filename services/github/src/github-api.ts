import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { UpstreamError, type IdempotencyStore, type Logger, type UpstreamClient, type UpstreamRequest, type UpstreamResponse } from "@hookmesh/kit";
import {
  AddReactionResponseSchema,
  CommentSchema,
  CreateCloneTokenResponseSchema,
  CreateCommentResponseSchema,
  DeleteCommentResponseSchema,
  GetIssueResponseSchema,
  GetPullRequestResponseSchema,
  IssueSchema,
  PullRequestSchema,
  ReactionTarget,
  UpdateCommentResponseSchema,
  type AddReactionResponse,
  type CreateCloneTokenResponse,
  type CreateCommentResponse,
  type DeleteCommentResponse,
  type GetIssueResponse,
  type GetPullRequestResponse,
  type UpdateCommentResponse,
} from "../../../gen/hookmesh/github/v1/github_pb.js";
import { CallInfoSchema, type CallInfo } from "../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import type { CallOptions, GitHubAuth } from "./auth.js";
import { AuthPreconditionError, IdempotencyUnavailableError, InvalidRequestError, NoCredentialsError } from "./errors.js";
import { reactionId, toComment, toIssue, toPullRequest } from "./resources.js";
import { GITHUB_HEADERS, webOrigin } from "./upstream.js";

/** The placeholder id of what a dry run would have created. */
export const DRY_RUN_ID = 0n;

/** What a dry run answers where GitHub would have answered with text (a title, a token). */
export const DRY_RUN_TEXT = "dry run: nothing was sent to GitHub";

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
  /** The client for GITHUB_API_URL (see `githubUpstream`). */
  upstream: UpstreamClient;
  auth: GitHubAuth;
  /** Remembers CreateComment results by idempotency key. */
  idempotency: IdempotencyStore;
  /** Without credentials: answer with what would have been sent (true) or fail naming the variable. */
  dryRun: boolean;
  logger: Logger;
}

type GitHubRequest = Pick<UpstreamRequest, "method" | "path" | "body" | "idempotent">;

/** What one request to GitHub gave: its answer, or nothing in a dry run. */
type Sent = { dryRun: false; res: UpstreamResponse; call: CallInfo } | { dryRun: true; call: CallInfo };

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
    options: CallOptions = {},
  ): Promise<CreateCommentResponse> {
    const { repository, path } = this.repository(input.repository);
    const number = positive(input.number, "number");
    requireBody(input.body);
    const live = this.live(repository);
    const request: GitHubRequest = { method: "POST", path: `${path}/issues/${number}/comments`, body: { body: input.body }, idempotent: false };
    const post = async () => {
      const sent = await this.send(repository, request, live, options);
      return create(CreateCommentResponseSchema, {
        comment: sent.dryRun ? create(CommentSchema, { id: DRY_RUN_ID, body: input.body }) : toComment(sent.res.body),
        call: sent.call,
      });
    };
    const key = input.idempotencyKey?.trim() ?? "";
    // A dry run posts nothing, so there is nothing to remember: the first real call must post.
    if (key === "" || !live) return post();
    const { response, replayed } = await this.once(`createComment:${key}`, post, options.signal);
    // Only real calls are stored, so a replay is never a dry run.
    if (replayed) response.call = create(CallInfoSchema, { request: response.call?.request, replayed: true });
    return response;
  }

  /** Replaces a comment's body (issue and pull request conversation comments alike). */
  async updateComment(
    input: { repository?: RepositoryInput; commentId: bigint; body: string },
    options: CallOptions = {},
  ): Promise<UpdateCommentResponse> {
    const { repository, path } = this.repository(input.repository);
    const commentId = positive(input.commentId, "comment_id");
    requireBody(input.body);
    const request: GitHubRequest = { method: "PATCH", path: `${path}/issues/comments/${commentId}`, body: { body: input.body }, idempotent: true };
    const sent = await this.send(repository, request, this.live(repository), options);
    return create(UpdateCommentResponseSchema, {
      comment: sent.dryRun ? create(CommentSchema, { id: input.commentId, body: input.body }) : toComment(sent.res.body),
      call: sent.call,
    });
  }

  /** Deletes a comment; one already gone (404) counts as deleted. */
  async deleteComment(input: { repository?: RepositoryInput; commentId: bigint }, options: CallOptions = {}): Promise<DeleteCommentResponse> {
    const { repository, path } = this.repository(input.repository);
    const commentId = positive(input.commentId, "comment_id");
    const request: GitHubRequest = { method: "DELETE", path: `${path}/issues/comments/${commentId}`, idempotent: true };
    const live = this.live(repository);
    try {
      const sent = await this.send(repository, request, live, options);
      return create(DeleteCommentResponseSchema, { call: sent.call });
    } catch (err) {
      if (!(err instanceof UpstreamError && err.status === 404)) throw err;
      this.deps.logger.debug({ commentId }, "comment already gone");
      return create(DeleteCommentResponseSchema, { call: { request: this.deps.upstream.describe(request) } });
    }
  }

  /**
   * Reacts to an issue or pull request, or to an issue comment. GitHub answers 201 for a new
   * reaction and 200 with the existing one when this identity already reacted so: either way
   * there is one reaction, so the call is safe to repeat.
   */
  async addReaction(
    input: { repository?: RepositoryInput; target: ReactionTarget; number: bigint; commentId: bigint; content: string },
    options: CallOptions = {},
  ): Promise<AddReactionResponse> {
    const { repository, path } = this.repository(input.repository);
    const content = input.content.trim();
    if (!REACTIONS.includes(content)) throw new InvalidRequestError(`content must be one of ${REACTIONS.join(", ")}; got "${content.slice(0, 32)}"`);
    let on: string;
    if (input.target === ReactionTarget.ISSUE) on = `issues/${positive(input.number, "number")}`;
    else if (input.target === ReactionTarget.ISSUE_COMMENT) on = `issues/comments/${positive(input.commentId, "comment_id")}`;
    else throw new InvalidRequestError("target is required: REACTION_TARGET_ISSUE (with number) or REACTION_TARGET_ISSUE_COMMENT (with comment_id)");
    const request: GitHubRequest = { method: "POST", path: `${path}/${on}/reactions`, body: { content }, idempotent: true };
    const sent = await this.send(repository, request, this.live(repository), options);
    return create(AddReactionResponseSchema, { reactionId: sent.dryRun ? DRY_RUN_ID : reactionId(sent.res.body), call: sent.call });
  }

  /** An issue; a pull request is also an issue (then `pull_request` is true). */
  async getIssue(input: { repository?: RepositoryInput; number: bigint }, options: CallOptions = {}): Promise<GetIssueResponse> {
    const { repository, path } = this.repository(input.repository);
    const number = positive(input.number, "number");
    const sent = await this.send(repository, { method: "GET", path: `${path}/issues/${number}`, idempotent: true }, this.live(repository), options);
    return create(GetIssueResponseSchema, {
      issue: sent.dryRun ? create(IssueSchema, { number: input.number, title: DRY_RUN_TEXT }) : toIssue(sent.res.body),
      call: sent.call,
    });
  }

  async getPullRequest(input: { repository?: RepositoryInput; number: bigint }, options: CallOptions = {}): Promise<GetPullRequestResponse> {
    const { repository, path } = this.repository(input.repository);
    const number = positive(input.number, "number");
    const sent = await this.send(repository, { method: "GET", path: `${path}/pulls/${number}`, idempotent: true }, this.live(repository), options);
    return create(GetPullRequestResponseSchema, {
      pullRequest: sent.dryRun ? create(PullRequestSchema, { number: input.number, title: DRY_RUN_TEXT }) : toPullRequest(sent.res.body),
      call: sent.call,
    });
  }

  /**
   * A new installation token limited to reading this one repository's contents, and the URL
   * that clones with it. GitHub App auth only: a personal token cannot be narrowed. A dry run
   * answers no token and the anonymous clone URL, which still clones a public repository.
   */
  async createCloneToken(input: { repository?: RepositoryInput }, options: CallOptions = {}): Promise<CreateCloneTokenResponse> {
    const { repository } = this.repository(input.repository);
    const { auth, upstream } = this.deps;
    if (auth.mode() === "token") {
      throw new AuthPreconditionError(
        "CreateCloneToken needs GitHub App auth (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY): a personal token (GITHUB_TOKEN) cannot be limited to one repository",
      );
    }
    const live = this.live(repository);
    const body = { repositories: [repository.repo], permissions: { contents: "read" } };
    const call = create(CallInfoSchema, { dryRun: !live, request: upstream.describe(auth.accessTokensRequest(repository.installationId, body)) });
    if (!live) {
      this.logDryRun(call);
      return create(CreateCloneTokenResponseSchema, { token: "", cloneUrl: this.cloneUrl(repository), call });
    }
    const token = await auth.createInstallationToken(repository.installationId, body, options);
    return create(CreateCloneTokenResponseSchema, {
      token: token.token,
      expireTime: timestampFromMs(token.expiresAtMs),
      cloneUrl: this.cloneUrl(repository, token.token),
      call,
    });
  }

  /**
   * Whether calls on `repository` reach GitHub (true) or are a dry run (false). Without
   * credentials and without dry run, fails naming the variable to set; with App auth, a call
   * without an installation fails naming the field.
   */
  private live(repository: RepositoryInput): boolean {
    const mode = this.deps.auth.mode();
    if (mode === "none") {
      if (this.deps.dryRun) return false;
      throw new NoCredentialsError("GITHUB_TOKEN", "GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY");
    }
    if (mode === "app") this.deps.auth.requireInstallation(repository.installationId);
    return true;
  }

  private async send(repository: RepositoryInput, req: GitHubRequest, live: boolean, options: CallOptions): Promise<Sent> {
    const { auth, upstream } = this.deps;
    const call = create(CallInfoSchema, { dryRun: !live, request: upstream.describe(req) });
    if (!live) {
      this.logDryRun(call);
      return { dryRun: true, call };
    }
    // One deadline for the whole call: a token request, the request, and a retry after a 401.
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    const within = () => ({ signal: options.signal, timeoutMs: deadline === undefined ? undefined : Math.max(0, deadline - Date.now()) });
    let authorization = await auth.authorization(repository.installationId, within());
    let res: UpstreamResponse;
    try {
      res = await upstream.request({ ...req, headers: GITHUB_HEADERS, auth: authorization.header, ...within() });
    } catch (err) {
      // A 401 on an installation token: it was revoked or the App's access changed. GitHub acts
      // on nothing it answers 401 to, so even a create is sent once more, with a new token.
      if (!(err instanceof UpstreamError && err.status === 401 && auth.invalidate(authorization))) throw err;
      authorization = await auth.authorization(repository.installationId, within());
      res = await upstream.request({ ...req, headers: GITHUB_HEADERS, auth: authorization.header, ...within() });
    }
    return { dryRun: false, res, call };
  }

  private logDryRun(call: CallInfo): void {
    const { method, url } = call.request!;
    this.deps.logger.info({ upstream: "github", method, url }, "dry run: request not sent to GitHub");
  }

  /** The repository's `/repos/{owner}/{repo}` path, after checking both names. */
  private repository(repository: RepositoryInput | undefined): { repository: RepositoryInput; path: string } {
    if (repository === undefined) throw new InvalidRequestError("repository is required");
    const owner = pathSegment(repository.owner, "repository.owner");
    const repo = pathSegment(repository.repo.replace(/\.git$/, ""), "repository.repo");
    return { repository: { ...repository, owner, repo }, path: `/repos/${owner}/${repo}` };
  }

  /** `https://x-access-token:{token}@{host}/{owner}/{repo}.git`, or without credentials. */
  private cloneUrl(repository: RepositoryInput, token?: string): string {
    const { protocol, host } = webOrigin(this.deps.upstream.url(""));
    const credentials = token === undefined ? "" : `x-access-token:${encodeURIComponent(token)}@`;
    return `${protocol}//${credentials}${host}/${repository.owner}/${repository.repo}.git`;
  }

  /** `run` under an idempotency key; a store failure (not run's own) becomes Unavailable. */
  private async once(key: string, run: () => Promise<CreateCommentResponse>, signal?: AbortSignal) {
    let runError: unknown;
    try {
      return await this.deps.idempotency.once(
        key,
        CreateCommentResponseSchema,
        () =>
          run().catch((err: unknown) => {
            runError = err;
            throw err;
          }),
        signal,
      );
    } catch (err) {
      if (err === runError) throw err;
      if (signal?.aborted) throw new UpstreamError(Code.Canceled, "github: canceled");
      throw new IdempotencyUnavailableError(err);
    }
  }
}

/** An owner or repository name as a path segment: GitHub's names, nothing that could change the path. */
function pathSegment(value: string, field: string): string {
  const name = value.trim();
  if (name === "") throw new InvalidRequestError(`${field} is required`);
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "." || name === "..") {
    throw new InvalidRequestError(`${field} is not a GitHub name: "${name.slice(0, 100)}"`);
  }
  return name;
}

function positive(value: bigint, field: string): string {
  if (value <= 0n) throw new InvalidRequestError(`${field} is required (a positive number)`);
  return value.toString();
}

function requireBody(body: string): void {
  if (body.trim() === "") throw new InvalidRequestError("body is required");
}
