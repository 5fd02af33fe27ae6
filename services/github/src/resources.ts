import { create } from "@bufbuild/protobuf";
import {
  type Comment,
  CommentSchema,
  type Issue,
  IssueSchema,
  type PullRequest,
  PullRequestSchema,
} from "../../../gen/hookmesh/github/v1/github_pb.js";

/**
 * GitHub's JSON resources as hookmesh's messages. GitHub's answers are read defensively: a
 * field that is missing or null (an issue without a body, a deleted user) becomes its zero value.
 */

type Json = Record<string, unknown>;

/** An issue comment (`POST /repos/{o}/{r}/issues/{n}/comments`, `PATCH …/issues/comments/{id}`). */
export function toComment(body: unknown): Comment {
  const json = object(body);
  return create(CommentSchema, { id: int(json.id), body: string(json.body), htmlUrl: string(json.html_url) });
}

/** An issue, or a pull request seen as an issue (it then has a `pull_request` object). */
export function toIssue(body: unknown): Issue {
  const json = object(body);
  return create(IssueSchema, {
    ...discussion(json),
    // GitHub answers label objects; it takes plain names too, so both are read.
    labels: array(json.labels)
      .map((label) => (typeof label === "string" ? label : string(object(label).name)))
      .filter((name) => name !== ""),
    pullRequest: typeof json.pull_request === "object" && json.pull_request !== null,
  });
}

export function toPullRequest(body: unknown): PullRequest {
  const json = object(body);
  const head = object(json.head);
  return create(PullRequestSchema, {
    ...discussion(json),
    headRef: string(head.ref),
    headSha: string(head.sha),
    baseRef: string(object(json.base).ref),
    draft: json.draft === true,
    merged: json.merged === true,
  });
}

/** What issues and pull requests have alike. */
function discussion(json: Json): Pick<Issue, "number" | "title" | "body" | "state" | "htmlUrl" | "author"> {
  return {
    number: int(json.number),
    title: string(json.title),
    body: string(json.body),
    state: string(json.state),
    htmlUrl: string(json.html_url),
    author: string(object(json.user).login),
  };
}

/** The id in GitHub's answer to a reaction (`{ id, content, user, … }`). */
export function reactionId(body: unknown): bigint {
  return int(object(body).id);
}

function object(value: unknown): Json {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

function array(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function string(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function int(value: unknown): bigint {
  if (typeof value === "number" && Number.isFinite(value)) return BigInt(Math.trunc(value));
  if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
  return 0n;
}
