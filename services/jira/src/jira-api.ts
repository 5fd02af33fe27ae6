import { create } from "@bufbuild/protobuf";
import {
  MissingCredentialError,
  UpstreamError,
  type Credential,
  type IdempotencyStore,
  type Logger,
  type UpstreamClient,
  type UpstreamRequest,
  type UpstreamResponse,
} from "@hookmesh/kit";
import { CallInfoSchema, type CallInfo } from "../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import {
  AddCommentResponseSchema,
  CommentSchema,
  GetIssueResponseSchema,
  IssueSchema,
  TransitionIssueResponseSchema,
  UpdateCommentResponseSchema,
  type AddCommentResponse,
  type Comment,
  type GetIssueResponse,
  type TransitionIssueResponse,
  type UpdateCommentResponse,
} from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { adfToText, normalizeText, textToAdf } from "./adf.js";
import { InvalidRequestError, TransitionUnavailableError } from "./errors.js";

/** Email + API token (Basic, Jira Cloud) or a bearer token (Data Center / Server personal access token). */
export type JiraAuth = { scheme: "basic"; email: string; token: Credential } | { scheme: "bearer"; token: Credential };

export interface JiraApiOptions {
  /** Built with `createJiraUpstream`, on the base URL (or DRY_RUN_BASE_URL when there is none). */
  upstream: UpstreamClient;
  /** False when JIRA_BASE_URL is unset: only dry runs are possible. */
  hasBaseUrl: boolean;
  /** 3: Cloud, bodies in Atlassian Document Format; 2: Data Center / Server, wiki-markup strings. */
  apiVersion: 2 | 3;
  /** Undefined when no credential is configured at all. */
  auth: JiraAuth | undefined;
  /** Without a base URL or credentials, describe the request instead of failing. */
  dryRun: boolean;
  idempotency: IdempotencyStore;
  logger: Logger;
}

/** The caller's cancellation and deadline (epoch ms), passed on to every request to Jira. */
export interface CallContext {
  signal?: AbortSignal;
  deadline?: number;
}

/** Where dry-run URLs point when JIRA_BASE_URL is unset; `.invalid` never resolves. */
export const DRY_RUN_BASE_URL = "https://jira.invalid";
/** The id of anything a dry run would have created. */
export const DRY_RUN_ID = "dry-run";
/** The variables that configure credentials, named when there are none. */
const CREDENTIAL_VARIABLES = "JIRA_EMAIL + JIRA_API_TOKEN or JIRA_BEARER_TOKEN";
const ISSUE_FIELDS = "summary,description,status,issuetype,assignee";

/** Issue keys (`PROJ-7`) and ids (`10042`); nothing that could change the path. */
const ISSUE_KEY = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const COMMENT_ID = /^[A-Za-z0-9_-]+$/;

type Described = Pick<UpstreamRequest, "method" | "path" | "body">;

/**
 * Jira's REST API as hookmesh uses it: comments, issues and transitions, on Cloud (REST v3,
 * Atlassian Document Format) or Data Center / Server (REST v2, wiki markup). Every answer
 * carries the request as sent, without credentials; without a base URL or credentials and
 * with dry run on, nothing is sent and the answer says what would have been.
 */
export class JiraApi {
  private readonly upstream: UpstreamClient;
  private readonly logger: Logger;

  constructor(private readonly options: JiraApiOptions) {
    this.upstream = options.upstream;
    this.logger = options.logger;
  }

  /** Adds a comment; with an idempotency key, a repeated call returns the first call's comment. */
  async addComment(
    input: { issueKey: string; body: string; idempotencyKey: string },
    ctx: CallContext = {},
  ): Promise<AddCommentResponse> {
    const key = issueKey(input.issueKey);
    const text = commentText(input.body);
    const request: Described = { method: "POST", path: `${this.issuePath(key)}/comment`, body: { body: this.richText(text) } };
    const auth = this.authorization();
    if (auth === undefined) {
      // Nothing is created, so nothing is remembered under the key: a later real call must post.
      return create(AddCommentResponseSchema, {
        comment: create(CommentSchema, { id: DRY_RUN_ID, body: text, url: this.browseUrl(key) }),
        call: this.dryRun("addComment", request),
      });
    }
    const post = async () => {
      // Not idempotent: retried only when Jira refused it for the rate limit, never after a 5xx.
      const res = await this.send({ ...request, auth, idempotent: false }, ctx);
      return create(AddCommentResponseSchema, { comment: this.comment(key, res.body), call: this.callInfo(request) });
    };
    if (input.idempotencyKey === "") return post();
    const { response, replayed } = await this.options.idempotency.once(`addComment:${input.idempotencyKey}`, AddCommentResponseSchema, post, ctx.signal);
    if (replayed) response.call = create(CallInfoSchema, { request: response.call?.request, replayed: true });
    return response;
  }

  /** Replaces a comment's body. */
  async updateComment(
    input: { issueKey: string; commentId: string; body: string },
    ctx: CallContext = {},
  ): Promise<UpdateCommentResponse> {
    const key = issueKey(input.issueKey);
    if (!COMMENT_ID.test(input.commentId)) throw new InvalidRequestError("comment_id", "expected a comment id such as 10042");
    const text = commentText(input.body);
    const request: Described = {
      method: "PUT",
      path: `${this.issuePath(key)}/comment/${input.commentId}`,
      body: { body: this.richText(text) },
    };
    const auth = this.authorization();
    if (auth === undefined) {
      return create(UpdateCommentResponseSchema, {
        comment: create(CommentSchema, { id: input.commentId, body: text, url: this.commentUrl(key, input.commentId) }),
        call: this.dryRun("updateComment", request),
      });
    }
    const res = await this.send({ ...request, auth, idempotent: true }, ctx);
    return create(UpdateCommentResponseSchema, { comment: this.comment(key, res.body), call: this.callInfo(request) });
  }

  /** Returns an issue's summary, description (as plain text), status, type and assignee. */
  async getIssue(input: { issueKey: string }, ctx: CallContext = {}): Promise<GetIssueResponse> {
    const key = issueKey(input.issueKey);
    const request: Described = { method: "GET", path: `${this.issuePath(key)}?fields=${ISSUE_FIELDS}` };
    const auth = this.authorization();
    if (auth === undefined) {
      return create(GetIssueResponseSchema, {
        issue: create(IssueSchema, { key, summary: "(dry run: not fetched from Jira)", url: this.browseUrl(key) }),
        call: this.dryRun("getIssue", request),
      });
    }
    const res = await this.send({ ...request, auth, idempotent: true }, ctx);
    const issue = record(res.body);
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
      call: this.callInfo(request),
    });
  }

  /**
   * Moves an issue through a transition, by id, or by name compared case-insensitively (a name
   * that matches no transition may name the status exactly one transition leads to). The
   * transitions available from the issue's status are looked up first; the answer's request is
   * the transition itself.
   */
  async transitionIssue(
    input: { issueKey: string; transitionId: string; transitionName: string },
    ctx: CallContext = {},
  ): Promise<TransitionIssueResponse> {
    const key = issueKey(input.issueKey);
    const wantedId = input.transitionId.trim();
    const wantedName = input.transitionName.trim();
    if (wantedId === "" && wantedName === "") throw new InvalidRequestError("transition_id", "set transition_id or transition_name");
    const path = `${this.issuePath(key)}/transitions`;
    const auth = this.authorization();
    if (auth === undefined) {
      // Which id a name stands for is only known by asking Jira; the dry run says so.
      const id = wantedId || DRY_RUN_ID;
      const request: Described = { method: "POST", path, body: { transition: { id } } };
      const call = this.dryRun("transitionIssue", request, wantedId === "" ? { transitionName: wantedName } : {});
      return create(TransitionIssueResponseSchema, { transitionId: id, call });
    }
    const available = transitions((await this.send({ method: "GET", path, auth, idempotent: true }, ctx)).body);
    const chosen = wantedId !== "" ? available.find((t) => t.id === wantedId) : byName(available, wantedName);
    if (chosen === undefined) {
      throw new TransitionUnavailableError(key, wantedId !== "" ? `id ${wantedId}` : `"${wantedName}"`, available);
    }
    const request: Described = { method: "POST", path, body: { transition: { id: chosen.id } } };
    await this.send({ ...request, auth, idempotent: false }, ctx);
    return create(TransitionIssueResponseSchema, { transitionId: chosen.id, call: this.callInfo(request) });
  }

  /** The variable to set before calls can reach Jira (JIRA_BASE_URL, then a credential), or undefined when none is missing. */
  missingSetting(): string | undefined {
    const { hasBaseUrl, auth } = this.options;
    if (!hasBaseUrl) return "JIRA_BASE_URL";
    if (auth?.token.get() === undefined) return auth?.token.variable ?? CREDENTIAL_VARIABLES;
    return undefined;
  }

  /**
   * The Authorization header's value, or undefined when this call is a dry run. Without a base
   * URL or credentials and without dry run, fails naming the variable to set.
   */
  private authorization(): string | undefined {
    const missing = this.missingSetting();
    if (missing !== undefined) {
      if (this.options.dryRun) return undefined;
      throw new MissingCredentialError(missing);
    }
    const auth = this.options.auth!;
    const token = auth.token.require();
    return auth.scheme === "basic" ? `Basic ${Buffer.from(`${auth.email}:${token}`).toString("base64")}` : `Bearer ${token}`;
  }

  /** Logs a request not sent (never its credentials: a dry run has none) and describes it. */
  private dryRun(rpc: string, request: Described, extra: Record<string, string> = {}): CallInfo {
    const call = this.callInfo(request, true);
    this.logger.info({ upstream: "jira", rpc, method: call.request!.method, url: call.request!.url, ...extra }, "dry run: request not sent to Jira");
    return call;
  }

  private async send(req: UpstreamRequest, ctx: CallContext): Promise<UpstreamResponse> {
    try {
      return await this.upstream.request({
        ...req,
        ...(ctx.signal && { signal: ctx.signal }),
        ...(ctx.deadline !== undefined && { timeoutMs: ctx.deadline - Date.now() }),
      });
    } catch (err) {
      throw this.redact(err, req.auth);
    }
  }

  /** Jira's messages are passed on to callers; a credential in one (echoed back) never is. */
  private redact(err: unknown, auth: string | undefined): unknown {
    if (!(err instanceof UpstreamError)) return err;
    const secrets = [this.options.auth?.token.get(), auth, auth?.replace(/^\S+ /, "")].filter((s): s is string => !!s && s.length >= 4);
    const message = secrets.reduce((text, secret) => text.split(secret).join("[redacted]"), err.message);
    return message === err.message ? err : new UpstreamError(err.code, message, err.status);
  }

  private callInfo(request: Described, dryRun = false): CallInfo {
    return create(CallInfoSchema, { dryRun, request: this.upstream.describe(request) });
  }

  private issuePath(key: string): string {
    return `/rest/api/${this.options.apiVersion}/issue/${key}`;
  }

  /** ADF for REST v3; for v2 the text itself, which Jira's wiki renderer shows as paragraphs and lines. */
  private richText(text: string): unknown {
    return this.options.apiVersion === 3 ? textToAdf(text) : text;
  }

  private comment(key: string, body: unknown): Comment {
    const comment = record(body);
    const id = string(comment.id);
    return create(CommentSchema, { id, body: adfToText(comment.body), url: this.commentUrl(key, id) });
  }

  private browseUrl(key: string): string {
    return this.upstream.url(`/browse/${key}`);
  }

  private commentUrl(key: string, id: string): string {
    return `${this.browseUrl(key)}?focusedCommentId=${id}`;
  }
}

function issueKey(value: string): string {
  const key = value.trim();
  if (!ISSUE_KEY.test(key)) throw new InvalidRequestError("issue_key", "expected an issue key such as PROJ-7 or an issue id");
  return key;
}

function commentText(body: string): string {
  const text = normalizeText(body);
  if (text === "") throw new InvalidRequestError("body", "must not be empty");
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
