import { create } from "@bufbuild/protobuf";
import {
  type Caller,
  type Credential,
  InvalidRequestError,
  type ProviderCalls,
  type UnsignedRequest,
  type UpstreamClient,
} from "@hookmesh/kit";
import {
  type AddCommentResponse,
  AddCommentResponseSchema,
  CommentSchema,
  type GetIssueResponse,
  GetIssueResponseSchema,
  type Issue,
  IssueSchema,
  IssueStatus,
  type UpdateCommentResponse,
  UpdateCommentResponseSchema,
  type UpdateIssueResponse,
  UpdateIssueResponseSchema,
} from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { sentryStatus, toComment, toIssue } from "./resources.js";

/** The assignee that clears an issue's assignee. */
export const UNASSIGN = "unassign";

export interface SentryApiDeps {
  /** The client for SENTRY_API_URL, with `sentryPolicy`. */
  upstream: UpstreamClient;
  /** SENTRY_AUTH_TOKEN, sent as a bearer token; read at each call, so a rotated token applies at once. */
  token: Credential;
  /** Live or dry run, and AddComment once per idempotency key. */
  calls: ProviderCalls;
}

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

  async getIssue(input: { issueId: string }, caller: Caller = {}): Promise<GetIssueResponse> {
    const request: UnsignedRequest = { method: "GET", path: `/issues/${issuePath(input.issueId)}/`, idempotent: true };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    return create(GetIssueResponseSchema, {
      issue: sent.dryRun ? this.dryRunIssue(input.issueId) : toIssue(sent.answer),
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
    caller: Caller = {},
  ): Promise<AddCommentResponse> {
    const id = issuePath(input.issueId);
    requireText(input.text);
    const request: UnsignedRequest = {
      method: "POST",
      path: `/issues/${id}/comments/`,
      body: { text: input.text },
      idempotent: false,
    };
    return this.deps.calls.create(request, caller, (caller) => this.send(request, caller), {
      rpc: "addComment",
      idempotencyKey: input.idempotencyKey ?? "",
      schema: AddCommentResponseSchema,
      respond: (created) =>
        create(AddCommentResponseSchema, {
          comment: created.dryRun
            ? create(CommentSchema, { id: String(created.id), text: input.text })
            : toComment(created.answer),
          call: created.call,
        }),
    });
  }

  async updateComment(
    input: { issueId: string; commentId: string; text: string },
    caller: Caller = {},
  ): Promise<UpdateCommentResponse> {
    const id = issuePath(input.issueId);
    const commentId = input.commentId.trim();
    if (commentId === "") throw new InvalidRequestError("comment_id is required", "comment_id");
    requireText(input.text);
    const request: UnsignedRequest = {
      method: "PUT",
      path: `/issues/${id}/comments/${encodeURIComponent(commentId)}/`,
      body: { text: input.text },
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    return create(UpdateCommentResponseSchema, {
      comment: sent.dryRun ? create(CommentSchema, { id: commentId, text: input.text }) : toComment(sent.answer),
      call: sent.call,
    });
  }

  /**
   * Sets the status and/or the assignee (`user:{id}`, `team:{id}`, a username or an email;
   * `unassign` clears it). Sentry answers with the whole updated issue.
   */
  async updateIssue(
    input: { issueId: string; status: IssueStatus; assignee: string },
    caller: Caller = {},
  ): Promise<UpdateIssueResponse> {
    const id = issuePath(input.issueId);
    const body: { status?: string; assignedTo?: string } = {};
    if (input.status !== IssueStatus.UNSPECIFIED) {
      body.status = sentryStatus(input.status);
      if (body.status === undefined)
        throw new InvalidRequestError(`status ${input.status} is not a known IssueStatus`, "status");
    }
    const assignee = input.assignee.trim();
    // Sentry unassigns on an empty assignedTo.
    if (assignee !== "") body.assignedTo = assignee === UNASSIGN ? "" : assignee;
    if (body.status === undefined && body.assignedTo === undefined) {
      throw new InvalidRequestError("nothing to update: set status and/or assignee", "status");
    }
    const request: UnsignedRequest = { method: "PUT", path: `/issues/${id}/`, body, idempotent: true };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    return create(UpdateIssueResponseSchema, {
      issue: sent.dryRun
        ? this.dryRunIssue(input.issueId, { status: input.status, assignee: body.assignedTo ?? "" })
        : toIssue(sent.answer),
      call: sent.call,
    });
  }

  /** One request to Sentry with the bearer token; its JSON answer. */
  private async send(req: UnsignedRequest, caller: Caller): Promise<unknown> {
    const res = await this.deps.upstream.request({ ...req, auth: `Bearer ${this.deps.token.require()}`, ...caller });
    return res.body;
  }

  /** What a dry run answers for an issue: the id asked about, marked as not fetched, with the changes asked for. */
  private dryRunIssue(issueId: string, changes: Partial<Pick<Issue, "status" | "assignee">> = {}): Issue {
    return create(IssueSchema, { id: issueId.trim(), title: this.deps.calls.dryRunText, ...changes });
  }
}

/** The issue id as a path segment. */
function issuePath(issueId: string): string {
  const id = issueId.trim();
  if (id === "") throw new InvalidRequestError("issue_id is required", "issue_id");
  if (!/^\d+$/.test(id)) {
    throw new InvalidRequestError(
      `issue_id must be Sentry's numeric issue id, not a short id or URL: "${id.slice(0, 64)}"`,
      "issue_id",
    );
  }
  return id;
}

function requireText(text: string): void {
  if (text.trim() === "") throw new InvalidRequestError("text is required", "text");
}
