import { create } from "@bufbuild/protobuf";
import { ActorSchema, JiraSubjectSchema, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type JsonObject, obj, type ProviderVerdict, str } from "../webhook-provider.js";

export type JiraEventFields = Extract<ProviderVerdict, { kind: "event" }>["event"];

/**
 * A Jira webhook body. `webhookEvent` is the event type (`comment_created`,
 * `jira:issue_updated`, …) and `issue_event_type_name`, when Jira sends one, the action
 * (`issue_commented`, `issue_generic`, …).
 */
export function normalizeJira(payload: JsonObject, deliveryId: string, eventType: string): JiraEventFields {
  const issue = obj(payload.issue);
  const fields = obj(issue.fields);
  const hasComment = payload.comment !== undefined;
  const comment = obj(payload.comment);
  // `user` is who acted on an issue event; comment events have none, and there the comment's
  // last editor (its author, until someone edits it) is who acted.
  const user = obj(payload.user);
  const account = Object.keys(user).length > 0 ? user : obj(comment.updateAuthor ?? comment.author);
  const siteUrl = siteOf(str(issue.self)) || siteOf(str(comment.self));
  const issueKey = str(issue.key);
  const commentId = str(comment.id);
  const issueUrl = siteUrl && issueKey ? `${siteUrl}/browse/${issueKey}` : "";
  return {
    deliveryId,
    // Atlassian's identifier is unique within one site: the site scopes it.
    sourceId: siteUrl,
    eventType,
    action: str(payload.issue_event_type_name),
    actor: create(ActorSchema, {
      // Jira Cloud names accounts by accountId; Jira Server and Data Center by key and name.
      id: str(account.accountId) || str(account.key) || str(account.name),
      login: str(account.displayName) || str(account.name),
      bot: account.accountType === "app",
    }),
    subject: create(SubjectSchema, {
      ref: { case: "jira", value: create(JiraSubjectSchema, { siteUrl, issueKey, commentId }) },
      key: issueKey && `jira:${issueKey}`,
      url: issueUrl && commentId ? `${issueUrl}?focusedCommentId=${encodeURIComponent(commentId)}` : issueUrl,
      title: str(fields.summary),
    }),
    // A comment event's text is the comment, even an empty one: never the issue's description.
    text: richText(hasComment ? comment.body : fields.description),
    label: addedLabel(obj(payload.changelog)),
  };
}

/**
 * The site a REST `self` link belongs to: everything before `/rest/`, which keeps the context
 * path of a Jira Server or Data Center installed under one (`https://host/jira`).
 */
function siteOf(self: string): string {
  let url: URL;
  try {
    url = new URL(self);
  } catch {
    return "";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "";
  const rest = url.pathname.indexOf("/rest/");
  return url.origin + (rest > 0 ? url.pathname.slice(0, rest) : "");
}

/**
 * Jira Cloud's webhooks send comment bodies and descriptions as wiki-markup strings; REST v3
 * shapes (and some apps) send Atlassian Document Format, whose text is in its text nodes.
 */
function richText(value: unknown): string {
  if (typeof value === "string") return value;
  return adfText(value, 0);
}

/** ADF nodes whose children are inline and run together; every other node's children are blocks. */
const INLINE_PARENTS = new Set(["paragraph", "heading", "codeBlock"]);

/** Deeper than any document Jira produces; bounds the recursion over a sender's JSON. */
const MAX_ADF_DEPTH = 64;

function adfText(value: unknown, depth: number): string {
  const node = obj(value);
  const type = str(node.type);
  const attrs = obj(node.attrs);
  switch (type) {
    case "text":
      return str(node.text);
    case "hardBreak":
      return "\n";
    // A mention is kept as the `@Name` Jira shows, so that mention triggers can find it.
    case "mention":
    case "emoji":
    case "status":
      return str(attrs.text) || str(attrs.shortName);
    case "inlineCard":
    case "blockCard":
      return str(attrs.url);
  }
  if (depth >= MAX_ADF_DEPTH || !Array.isArray(node.content)) return "";
  const children = node.content.map((child) => adfText(child, depth + 1));
  return INLINE_PARENTS.has(type) ? children.join("") : children.filter((text) => text !== "").join("\n");
}

/**
 * The label added by an issue update, from the changelog's `labels` item, whose from/to
 * strings are the space-separated label sets before and after.
 */
function addedLabel(changelog: JsonObject): string {
  const items = Array.isArray(changelog.items) ? changelog.items.map(obj) : [];
  const change = items.find((item) => item.field === "labels");
  if (!change) return "";
  const before = new Set(str(change.fromString).split(" "));
  return (
    str(change.toString)
      .split(" ")
      .find((label) => label !== "" && !before.has(label)) ?? ""
  );
}
