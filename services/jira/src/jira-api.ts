import { create } from "@bufbuild/protobuf";
import {
  type Caller,
  InvalidRequestError,
  type ProviderCalls,
  type UnsignedRequest,
  type UpstreamClient,
  UpstreamError,
  type UpstreamResponse,
} from "@hookmesh/kit";
import {
  type AddCommentResponse,
  AddCommentResponseSchema,
  type Comment,
  CommentSchema,
  type GetIssueResponse,
  GetIssueResponseSchema,
  type GetUserGroupsResponse,
  GetUserGroupsResponseSchema,
  IssueSchema,
  type TransitionIssueResponse,
  TransitionIssueResponseSchema,
  type UpdateCommentResponse,
  UpdateCommentResponseSchema,
} from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { adfToText, normalizeText, textToAdf } from "./adf.js";
import type { JiraAuth } from "./auth.js";
import { TransitionUnavailableError } from "./errors.js";

export interface JiraApiDeps {
  /** The client for JIRA_BASE_URL (DRY_RUN_BASE_URL when there is none), with `jiraPolicy`. */
  upstream: UpstreamClient;
  auth: JiraAuth;
  /** Live or dry run, and AddComment once per idempotency key. */
  calls: ProviderCalls;
  /** 3: Cloud, bodies in Atlassian Document Format; 2: Data Center / Server, wiki-markup strings. */
  apiVersion: 2 | 3;
}

/** Where dry-run URLs point when JIRA_BASE_URL is unset; `.invalid` never resolves. */
export const DRY_RUN_BASE_URL = "https://jira.invalid";
/** The transition a dry run names when asked for one by name: which id a name stands for is only known by asking Jira. */
const DRY_RUN_TRANSITION_ID = "dry-run";
const ISSUE_FIELDS = "summary,description,status,issuetype,assignee";

/** Issue keys (`PROJ-7`) and ids (`10042`); nothing that could change the path. */
const ISSUE_KEY = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const COMMENT_ID = /^[A-Za-z0-9_-]+$/;
/** Cloud accountIds (`5b10…`, `557058:f581…`) and Data Center / Server user keys. */
const ACCOUNT_ID = /^[A-Za-z0-9:._@+-]{1,128}$/;

/**
 * Jira's REST API as hookmesh uses it: comments, issues and transitions, on Cloud (REST v3,
 * Atlassian Document Format) or Data Center / Server (REST v2, wiki markup). Every answer
 * carries the request as sent, without credentials; without a base URL or credentials and
 * with dry run on, nothing is sent and the answer says what would have been.
 */
export class JiraApi {
  constructor(private readonly deps: JiraApiDeps) {}

  /** Adds a comment; with an idempotency key, a repeated call returns the first call's comment. */
  async addComment(
    input: { issueKey: string; body: string; idempotencyKey: string },
    caller: Caller = {},
  ): Promise<AddCommentResponse> {
    const key = issueKey(input.issueKey);
    const text = commentText(input.body);
    // Not idempotent: retried only when Jira refused it for the rate limit, never after a 5xx.
    const request: UnsignedRequest = {
      method: "POST",
      path: `${this.issuePath(key)}/comment`,
      body: { body: this.richText(text) },
      idempotent: false,
    };
    return this.deps.calls.create(request, caller, (caller) => this.send(request, caller), {
      rpc: "addComment",
      idempotencyKey: input.idempotencyKey,
      schema: AddCommentResponseSchema,
      respond: (created) =>
        create(AddCommentResponseSchema, {
          comment: created.dryRun
            ? this.described(key, String(created.id), text)
            : this.comment(key, created.answer.body),
          call: created.call,
        }),
    });
  }

  /** Replaces a comment's body. */
  async updateComment(
    input: { issueKey: string; commentId: string; body: string },
    caller: Caller = {},
  ): Promise<UpdateCommentResponse> {
    const key = issueKey(input.issueKey);
    if (!COMMENT_ID.test(input.commentId))
      throw new InvalidRequestError("comment_id must be a comment id such as 10042", "comment_id");
    const text = commentText(input.body);
    const request: UnsignedRequest = {
      method: "PUT",
      path: `${this.issuePath(key)}/comment/${input.commentId}`,
      body: { body: this.richText(text) },
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    return create(UpdateCommentResponseSchema, {
      comment: sent.dryRun ? this.described(key, input.commentId, text) : this.comment(key, sent.answer.body),
      call: sent.call,
    });
  }

  /** Returns an issue's summary, description (as plain text), status, type and assignee. */
  async getIssue(input: { issueKey: string }, caller: Caller = {}): Promise<GetIssueResponse> {
    const key = issueKey(input.issueKey);
    const request: UnsignedRequest = {
      method: "GET",
      path: `${this.issuePath(key)}?fields=${ISSUE_FIELDS}`,
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    if (sent.dryRun) {
      return create(GetIssueResponseSchema, {
        issue: create(IssueSchema, { key, summary: this.deps.calls.dryRunText, url: this.browseUrl(key) }),
        call: sent.call,
      });
    }
    const issue = record(sent.answer.body);
    const fields = record(issue.fields);
    const assignee = record(fields.assignee);
    const foundKey = string(issue.key) || key;
    return create(GetIssueResponseSchema, {
      issue: create(IssueSchema, {
        key: foundKey,
        summary: string(fields.summary),
        description: adfToText(fields.description),
        status: string(record(fields.status).name),
        issueType: string(record(fields.issuetype).name),
        assignee: string(assignee.displayName) || string(assignee.name),
        url: this.browseUrl(foundKey),
      }),
      call: sent.call,
    });
  }

  /** The names of the groups an account belongs to. */
  async getUserGroups(input: { accountId: string }, caller: Caller = {}): Promise<GetUserGroupsResponse> {
    const account = input.accountId.trim();
    if (!ACCOUNT_ID.test(account))
      throw new InvalidRequestError("account_id must be a Jira accountId or user key", "account_id");
    const query = encodeURIComponent(account);
    const request: UnsignedRequest = {
      method: "GET",
      path:
        this.deps.apiVersion === 3
          ? `/rest/api/3/user/groups?accountId=${query}`
          : `/rest/api/2/user?key=${query}&expand=groups`,
      idempotent: true,
    };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    if (sent.dryRun) return create(GetUserGroupsResponseSchema, { call: sent.call });
    // Cloud answers the list itself; Data Center / Server the user, with `groups.items`.
    const body = sent.answer.body;
    const items = Array.isArray(body) ? body : record(record(body).groups).items;
    const groups = (Array.isArray(items) ? items : []).map((group) => string(record(group).name)).filter(Boolean);
    return create(GetUserGroupsResponseSchema, { groups, call: sent.call });
  }

  /**
   * Moves an issue through a transition, by id, or by name compared case-insensitively (a name
   * that matches no transition may name the status exactly one transition leads to). The
   * transitions available from the issue's status are listed first; the answer's request is
   * the transition itself. A dry run describes both; asked by name, it cannot know the id.
   */
  async transitionIssue(
    input: { issueKey: string; transitionId: string; transitionName: string },
    caller: Caller = {},
  ): Promise<TransitionIssueResponse> {
    const key = issueKey(input.issueKey);
    const wantedId = input.transitionId.trim();
    const wantedName = input.transitionName.trim();
    if (wantedId === "" && wantedName === "")
      throw new InvalidRequestError("transition_id or transition_name is required", "transition_id");
    const path = `${this.issuePath(key)}/transitions`;
    const listing: UnsignedRequest = { method: "GET", path, idempotent: true };
    const listed = await this.deps.calls.send(listing, caller, (caller) => this.send(listing, caller));
    let id = wantedId || DRY_RUN_TRANSITION_ID;
    if (!listed.dryRun) {
      const available = transitions(listed.answer.body);
      const chosen = wantedId !== "" ? available.find((t) => t.id === wantedId) : byName(available, wantedName);
      if (chosen === undefined)
        throw new TransitionUnavailableError(key, wantedId !== "" ? `id ${wantedId}` : `"${wantedName}"`, available);
      id = chosen.id;
    }
    const request: UnsignedRequest = { method: "POST", path, body: { transition: { id } }, idempotent: false };
    const sent = await this.deps.calls.send(request, caller, (caller) => this.send(request, caller));
    return create(TransitionIssueResponseSchema, { transitionId: id, call: sent.call });
  }

  /** One request to Jira, signed; Jira's messages are passed on to callers, a credential echoed in one never is. */
  private async send(req: UnsignedRequest, caller: Caller): Promise<UpstreamResponse> {
    const auth = this.deps.auth.header();
    try {
      return await this.deps.upstream.request({ ...req, auth, ...caller });
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      const secrets = [auth, auth.replace(/^\S+ /, ""), this.deps.auth.token?.get()].filter(
        (s): s is string => !!s && s.length >= 4,
      );
      const message = secrets.reduce((text, secret) => text.split(secret).join("[redacted]"), err.message);
      throw message === err.message ? err : new UpstreamError(err.code, message, err.status);
    }
  }

  private issuePath(key: string): string {
    return `/rest/api/${this.deps.apiVersion}/issue/${key}`;
  }

  /** ADF for REST v3; for v2 the text itself, which Jira's wiki renderer shows as paragraphs and lines. */
  private richText(text: string): unknown {
    return this.deps.apiVersion === 3 ? textToAdf(text) : text;
  }

  private comment(key: string, body: unknown): Comment {
    const comment = record(body);
    const id = string(comment.id);
    return create(CommentSchema, { id, body: adfToText(comment.body), url: this.commentUrl(key, id) });
  }

  /** A comment as a dry run describes it: the text it would have had. */
  private described(key: string, id: string, text: string): Comment {
    return create(CommentSchema, { id, body: text, url: this.commentUrl(key, id) });
  }

  private browseUrl(key: string): string {
    return this.deps.upstream.url(`/browse/${key}`);
  }

  private commentUrl(key: string, id: string): string {
    return `${this.browseUrl(key)}?focusedCommentId=${id}`;
  }
}

function issueKey(value: string): string {
  const key = value.trim();
  if (!ISSUE_KEY.test(key))
    throw new InvalidRequestError("issue_key must be an issue key such as PROJ-7 or an issue id", "issue_key");
  return key;
}

function commentText(body: string): string {
  const text = normalizeText(body);
  if (text === "") throw new InvalidRequestError("body must not be empty", "body");
  return text;
}

interface Transition {
  id: string;
  name: string;
  to: string;
}

/** The transitions Jira offers from the issue's status (`isAvailable: false` ones left out). */
function transitions(body: unknown): Transition[] {
  const list = record(body).transitions;
  if (!Array.isArray(list)) return [];
  return list
    .map(record)
    .filter((t) => t.isAvailable !== false)
    .map((t) => ({ id: string(t.id), name: string(t.name), to: string(record(t.to).name) }))
    .filter((t) => t.id !== "");
}

function byName(available: Transition[], name: string): Transition | undefined {
  const same = (a: string) => a.toLocaleLowerCase() === name.toLocaleLowerCase();
  const named = available.find((t) => same(t.name));
  if (named) return named;
  const leadingThere = available.filter((t) => same(t.to));
  return leadingThere.length === 1 ? leadingThere[0] : undefined;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

/** A string or number field as a string (Jira ids are strings, but be lenient), else "". */
function string(value: unknown): string {
  return typeof value === "string" ? value : typeof value === "number" ? String(value) : "";
}
