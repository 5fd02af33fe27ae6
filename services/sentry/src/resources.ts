import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { UpstreamError } from "@hookmesh/kit";
import {
  type Comment,
  CommentSchema,
  type Issue,
  IssueSchema,
  IssueStatus,
} from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";

/**
 * Sentry's JSON as hookmesh's messages. Sentry calls an issue a group and a comment a note (an
 * activity of type `note` whose `data.text` is the comment).
 */

type Json = Record<string, unknown>;

const record = (value: unknown): Json =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {};
const text = (value: unknown): string =>
  typeof value === "string" ? value : typeof value === "number" ? String(value) : "";

/** Sentry's status names, both ways. `resolvedInNextRelease` is resolved as far as callers go. */
const STATUS_FROM_SENTRY: Readonly<Record<string, IssueStatus>> = {
  resolved: IssueStatus.RESOLVED,
  resolvedInNextRelease: IssueStatus.RESOLVED,
  unresolved: IssueStatus.UNRESOLVED,
  ignored: IssueStatus.IGNORED,
};

const STATUS_TO_SENTRY: Readonly<Partial<Record<IssueStatus, string>>> = {
  [IssueStatus.RESOLVED]: "resolved",
  [IssueStatus.UNRESOLVED]: "unresolved",
  [IssueStatus.IGNORED]: "ignored",
};

/** The `status` Sentry takes for `status`, or undefined for a value that has none. */
export function sentryStatus(status: IssueStatus): string | undefined {
  return STATUS_TO_SENTRY[status];
}

/**
 * The assignee as hookmesh reports it, in a form UpdateIssue takes back: a user's email (or
 * name when Sentry hides the email), a team as `team:{id}`; empty when unassigned.
 */
function assignee(value: unknown): string {
  const actor = record(value);
  if (actor.type === "team") return actor.id === undefined ? text(actor.name) : `team:${text(actor.id)}`;
  return text(actor.email) || text(actor.name);
}

/** Sentry sends the event count as a string ("1243"). */
function count(value: unknown): bigint {
  const digits = text(value);
  return /^\d+$/.test(digits) ? BigInt(digits) : 0n;
}

/** An issue (group) as Sentry's issue endpoints return it. */
export function toIssue(body: unknown): Issue {
  const json = record(body);
  if (text(json.id) === "") throw unexpectedAnswer("an issue");
  return create(IssueSchema, {
    id: text(json.id),
    shortId: text(json.shortId),
    title: text(json.title),
    culprit: text(json.culprit),
    status: STATUS_FROM_SENTRY[text(json.status)] ?? IssueStatus.UNSPECIFIED,
    permalink: text(json.permalink),
    projectSlug: text(record(json.project).slug),
    assignee: assignee(json.assignedTo),
    count: count(json.count),
  });
}

/** A note (activity) as Sentry's comment endpoints return it. */
export function toComment(body: unknown): Comment {
  const json = record(body);
  if (text(json.id) === "") throw unexpectedAnswer("a comment");
  return create(CommentSchema, { id: text(json.id), text: text(record(json.data).text) });
}

/** A 2xx that is not Sentry's JSON: most often an API URL that points at Sentry's web UI. */
function unexpectedAnswer(what: string): UpstreamError {
  return new UpstreamError(
    Code.Unknown,
    `sentry answered without ${what}; SENTRY_API_URL must be the API root, e.g. https://sentry.io/api/0`,
  );
}
