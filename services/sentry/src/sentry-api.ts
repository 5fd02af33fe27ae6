import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { UpstreamError, type Credential, type IdempotencyStore, type Logger, type UpstreamClient, type UpstreamRequest } from "@hookmesh/kit";
import { CallInfoSchema, type CallInfo } from "../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import {
  AddCommentResponseSchema,
  GetIssueResponseSchema,
  IssueSchema,
  IssueStatus,
  UpdateCommentResponseSchema,
  UpdateIssueResponseSchema,
  type AddCommentResponse,
  type GetIssueResponse,
  type Issue,
  type UpdateCommentResponse,
  type UpdateIssueResponse,
} from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { IdempotencyUnavailableError, InvalidRequestError } from "./errors.js";
import { sentryStatus, toComment, toIssue } from "./issue.js";

/** The id of what a dry run would have created. */
export const DRY_RUN_ID = "dry-run";

/** The assignee that clears an issue's assignee. */
export const UNASSIGN = "unassign";

/** The caller's cancellation and remaining time, passed on to every request to Sentry. */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface SentryApiDeps {
  /** The client for SENTRY_API_URL (see `sentryUpstream`). */
  upstream: UpstreamClient;
  /** SENTRY_AUTH_TOKEN, sent as a bearer token; read at each call, so a rotated token applies at once. */
  token: Credential;
  /** Remembers AddComment results by idempotency key. */
  idempotency: IdempotencyStore;
  /** Without a token: answer with what would have been sent (true) or fail naming the variable. */
  dryRun: boolean;
  logger: Logger;
}

type SentryRequest = Pick<UpstreamRequest, "method" | "path" | "body" | "idempotent">;

/** What one request to Sentry gave: its JSON answer, or nothing in a dry run. */
type Sent = { dryRun: false; body: unknown; call: CallInfo } | { dryRun: true; call: CallInfo };

/**
 * Sentry's issue API as hookmesh uses it: read an issue, comment on it (Sentry's notes), edit a
 * comment, change the status and assignee.
 *
 * Issues are addressed at Sentry's organization-less paths (`/issues/{id}/`), which Sentry
 * serves for numeric issue ids, so that the service needs no organization setting; short ids
 * (`PROJECT-1A`) would need `/organizations/{org}/issues/{id}/` and are refused. Sentry's paths
 * end in a slash: without it Sentry redirects, and a redirected POST or PUT loses its body.
 */
export class SentryApi {
  constructor(private readonly deps: SentryApiDeps) {}

  async getIssue(issueId: string, options: CallOptions = {}): Promise<GetIssueResponse> {
    const id = issuePath(issueId);
    const sent = await this.send({ method: "GET", path: `/issues/${id}/`, idempotent: true }, this.authorization(), options);
    return create(GetIssueResponseSchema, {
      issue: sent.dryRun ? dryRunIssue(issueId) : toIssue(sent.body),
      call: sent.call,
    });
  }

  /**
   * Adds a note. With an idempotency key the first result is stored, and a call with the same
   * key gets it back (`call.replayed`) instead of a second note; a call made while the first
   * is in flight waits for its result.
   */
  async addComment(
    input: { issueId: string; text: string; idempotencyKey?: string },
    options: CallOptions = {},
  ): Promise<AddCommentResponse> {
    const id = issuePath(input.issueId);
    requireText(input.text);
    const auth = this.authorization();
    const request: SentryRequest = { method: "POST", path: `/issues/${id}/comments/`, body: { text: input.text }, idempotent: false };
    const post = async () => {
      const sent = await this.send(request, auth, options);
      return create(AddCommentResponseSchema, {
        comment: sent.dryRun ? { id: DRY_RUN_ID, text: input.text } : toComment(sent.body),
        call: sent.call,
      });
    };
    const key = input.idempotencyKey?.trim() ?? "";
    // A dry run posts nothing, so there is nothing to remember: the first real call must post.
    if (key === "" || auth === undefined) return post();
    const { response, replayed } = await this.once(`addComment:${key}`, post, options.signal);
    // Only real calls are stored, so a replay is never a dry run.
    if (replayed) response.call = create(CallInfoSchema, { request: response.call?.request, replayed: true });
    return response;
  }

  async updateComment(
    input: { issueId: string; commentId: string; text: string },
    options: CallOptions = {},
  ): Promise<UpdateCommentResponse> {
    const id = issuePath(input.issueId);
    const commentId = input.commentId.trim();
    if (commentId === "") throw new InvalidRequestError("comment_id is required");
    requireText(input.text);
    const path = `/issues/${id}/comments/${encodeURIComponent(commentId)}/`;
    const sent = await this.send({ method: "PUT", path, body: { text: input.text }, idempotent: true }, this.authorization(), options);
    return create(UpdateCommentResponseSchema, {
      comment: sent.dryRun ? { id: commentId, text: input.text } : toComment(sent.body),
      call: sent.call,
    });
  }

  /**
   * Sets the status and/or the assignee (`user:{id}`, `team:{id}`, a username or an email;
   * `unassign` clears it). Sentry answers with the whole updated issue.
   */
  async updateIssue(
    input: { issueId: string; status: IssueStatus; assignee: string },
    options: CallOptions = {},
  ): Promise<UpdateIssueResponse> {
    const id = issuePath(input.issueId);
    const body: { status?: string; assignedTo?: string } = {};
    if (input.status !== IssueStatus.UNSPECIFIED) {
      body.status = sentryStatus(input.status);
      if (body.status === undefined) throw new InvalidRequestError(`status ${input.status} is not a known IssueStatus`);
    }
    const assignee = input.assignee.trim();
    // Sentry unassigns on an empty assignedTo.
    if (assignee !== "") body.assignedTo = assignee === UNASSIGN ? "" : assignee;
    if (body.status === undefined && body.assignedTo === undefined) {
      throw new InvalidRequestError("nothing to update: set status and/or assignee");
    }
    const sent = await this.send({ method: "PUT", path: `/issues/${id}/`, body, idempotent: true }, this.authorization(), options);
    return create(UpdateIssueResponseSchema, {
      issue: sent.dryRun ? dryRunIssue(input.issueId, { status: input.status, assignee: body.assignedTo ?? "" }) : toIssue(sent.body),
      call: sent.call,
    });
  }

  /**
   * The Authorization header, or undefined for a dry run (no token, dry run on); without a
   * token and without dry run, fails naming the variable to set.
   */
  private authorization(): string | undefined {
    const token = this.deps.token.get();
    if (token !== undefined) return `Bearer ${token}`;
    if (this.deps.dryRun) return undefined;
    return this.deps.token.require();
  }

  private async send(req: SentryRequest, auth: string | undefined, options: CallOptions): Promise<Sent> {
    const request = this.deps.upstream.describe(req);
    if (auth === undefined) {
      this.deps.logger.info({ upstream: "sentry", method: request.method, url: request.url }, "dry run: request not sent to Sentry");
      return { dryRun: true, call: create(CallInfoSchema, { dryRun: true, request }) };
    }
    const res = await this.deps.upstream.request({ ...req, auth, signal: options.signal, timeoutMs: options.timeoutMs });
    return { dryRun: false, body: res.body, call: create(CallInfoSchema, { request }) };
  }

  /** `run` under an idempotency key; a store failure (not run's own) becomes Unavailable. */
  private async once(key: string, run: () => Promise<AddCommentResponse>, signal?: AbortSignal) {
    let runError: unknown;
    try {
      return await this.deps.idempotency.once(
        key,
        AddCommentResponseSchema,
        () =>
          run().catch((err: unknown) => {
            runError = err;
            throw err;
          }),
        signal,
      );
    } catch (err) {
      if (err === runError) throw err;
      if (signal?.aborted) throw new UpstreamError(Code.Canceled, "sentry: canceled");
      throw new IdempotencyUnavailableError(err);
    }
  }
}

/** The issue id as a path segment. */
function issuePath(issueId: string): string {
  const id = issueId.trim();
  if (id === "") throw new InvalidRequestError("issue_id is required");
  if (!/^\d+$/.test(id)) {
    throw new InvalidRequestError(`issue_id must be Sentry's numeric issue id, not a short id or URL: "${id.slice(0, 64)}"`);
  }
  return id;
}

function requireText(text: string): void {
  if (text.trim() === "") throw new InvalidRequestError("text is required");
}

/** What a dry run answers for an issue: the id asked about, marked as not fetched. */
function dryRunIssue(issueId: string, changes: Partial<Pick<Issue, "status" | "assignee">> = {}): Issue {
  return create(IssueSchema, { id: issueId.trim(), shortId: DRY_RUN_ID, title: "dry run: nothing was sent to Sentry", ...changes });
}
