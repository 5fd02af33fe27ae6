import { FakeProvider, type ReceivedRequest, type Reply } from "@hookmesh/kit/testing";

export interface FakeIssue {
  key: string;
  id: string;
  summary: string;
  /** ADF (v3) or a wiki-markup string (v2). */
  description: unknown;
  status: string;
  issueType: string;
  assignee: { accountId?: string; name?: string; displayName: string } | null;
  /** The transitions available from each status. */
  workflow: Record<string, { id: string; name: string; to: string }[]>;
}

interface StoredComment {
  id: string;
  issueKey: string;
  body: unknown;
}

const WORKFLOW: FakeIssue["workflow"] = {
  "To Do": [
    { id: "11", name: "Start Progress", to: "In Progress" },
    { id: "31", name: "Done", to: "Done" },
  ],
  "In Progress": [
    { id: "21", name: "Stop Progress", to: "To Do" },
    { id: "31", name: "Done", to: "Done" },
  ],
  Done: [{ id: "41", name: "Reopen", to: "To Do" }],
};

/**
 * A local HTTP server that behaves like Jira's REST API (Cloud v3 with Atlassian Document
 * Format, or Data Center / Server v2 with wiki-markup strings, under an optional context path)
 * for the resources hookmesh uses: issue comments (add, update), issues (get), transitions
 * (list, do) and a user's groups. It checks the Authorization header against `expectedAuth`,
 * answers with Jira's error bodies, records every request, and can be scripted to answer
 * anything or nothing.
 */
export class FakeJira extends FakeProvider {
  readonly issues = new Map<string, FakeIssue>();
  readonly comments = new Map<string, StoredComment>();
  /** The groups of each account (Cloud accountId, or Data Center / Server user key). */
  readonly groups = new Map<string, string[]>();
  /** The Authorization header Jira accepts. */
  expectedAuth = "";
  private nextCommentId = 10000;

  /** `contextPath`: where a Data Center / Server instance lives on its host, e.g. `/jira`. */
  constructor(contextPath = "") {
    super(contextPath);
    this.addIssue({ key: "PROJ-7" });
  }

  /** The base URL to configure, context path included. */
  get baseUrl(): string {
    return this.url;
  }

  addIssue(fields: Partial<FakeIssue> & { key: string }): FakeIssue {
    const issue: FakeIssue = {
      id: String(10000 + this.issues.size + 1),
      summary: "Login fails with SSO",
      description: adf("Steps:\n1. open /login", "Expected: it works"),
      status: "To Do",
      issueType: "Bug",
      assignee: { accountId: "5b10a2844c20165700ede21g", displayName: "Mia Krystof" },
      workflow: WORKFLOW,
      ...fields,
    };
    this.issues.set(issue.key, issue);
    return issue;
  }

  /** Cloud's `/user/groups?accountId=` (a list), or Server's `/user?key=&expand=groups` (the user). */
  private userGroups(req: ReceivedRequest): Reply {
    const params = new URLSearchParams(req.query);
    const cloud = req.path.endsWith("/groups");
    const account = (cloud ? params.get("accountId") : params.get("key")) ?? "";
    const names = this.groups.get(account);
    if (!names)
      return { status: 404, body: { errorMessages: [`The user with account ID '${account}' does not exist`] } };
    const items = names.map((name) => ({ name, groupId: `group-${name}` }));
    if (cloud) return { status: 200, body: items };
    return { status: 200, body: { key: account, name: account, groups: { size: items.length, items } } };
  }

  /** Jira's own behaviour, for a request signed as `expectedAuth`. */
  protected respond(req: ReceivedRequest): Reply {
    if (req.headers.authorization !== this.expectedAuth)
      return { status: 401, body: "Client must be authenticated to access this resource." };
    if (req.method === "GET" && (req.path === "/rest/api/3/user/groups" || req.path === "/rest/api/2/user"))
      return this.userGroups(req);
    const match = /^\/rest\/api\/(2|3)\/issue\/([^/]+)(\/comment(?:\/([^/]+))?|\/transitions)?$/.exec(req.path);
    if (!match) return { status: 404, body: { errorMessages: [`null for uri: ${req.rawPath}`] } };
    const [, version, key, sub, commentId] = match as unknown as [
      string,
      "2" | "3",
      string,
      string | undefined,
      string | undefined,
    ];
    const issue = this.issues.get(decodeURIComponent(key));
    if (!issue)
      return {
        status: 404,
        body: { errorMessages: ["Issue does not exist or you do not have permission to see it."], errors: {} },
      };
    const self = (path: string) => `${this.baseUrl}/rest/api/${version}/issue/${issue.id}${path}`;
    const jsonBody = req.headers["content-type"]?.startsWith("application/json") === true;
    const validBody = (value: unknown) =>
      version === "3"
        ? typeof value === "object" &&
          value !== null &&
          (value as { type?: unknown }).type === "doc" &&
          (value as { version?: unknown }).version === 1
        : typeof value === "string" && value !== "";

    if (sub === undefined && req.method === "GET") {
      const wanted = (
        new URLSearchParams(req.query).get("fields") ?? "summary,description,status,issuetype,assignee"
      ).split(",");
      const all: Record<string, unknown> = {
        summary: issue.summary,
        description: issue.description,
        status: { self: self("/status"), name: issue.status, id: "3", statusCategory: { key: "indeterminate" } },
        issuetype: { self: self("/issuetype"), id: "10004", name: issue.issueType, subtask: false },
        assignee: issue.assignee && { self: self("/user"), active: true, timeZone: "Europe/Oslo", ...issue.assignee },
      };
      const fields = Object.fromEntries(wanted.filter((f) => f in all).map((f) => [f, all[f]]));
      return {
        status: 200,
        body: { expand: "renderedFields,names,schema", id: issue.id, self: self(""), key: issue.key, fields },
      };
    }
    if (sub === "/comment" && req.method === "POST") {
      const commentBody = (req.body as { body?: unknown } | undefined)?.body;
      if (!jsonBody) return { status: 415 };
      if (!validBody(commentBody))
        return { status: 400, body: { errorMessages: [], errors: { comment: "Comment body is not valid!" } } };
      const id = String(this.nextCommentId++);
      this.comments.set(id, { id, issueKey: issue.key, body: commentBody });
      return { status: 201, body: this.commentJson(id, self) };
    }
    if (sub?.startsWith("/comment/") && req.method === "PUT") {
      const comment = this.comments.get(commentId ?? "");
      if (!comment || comment.issueKey !== issue.key) {
        return {
          status: 404,
          body: { errorMessages: [`Can not find a comment for the id: ${commentId}.`], errors: {} },
        };
      }
      const commentBody = (req.body as { body?: unknown } | undefined)?.body;
      if (!validBody(commentBody))
        return { status: 400, body: { errorMessages: [], errors: { comment: "Comment body is not valid!" } } };
      comment.body = commentBody;
      return { status: 200, body: this.commentJson(comment.id, self) };
    }
    if (sub === "/transitions" && req.method === "GET") {
      const transitions = (issue.workflow[issue.status] ?? []).map((t) => ({
        id: t.id,
        name: t.name,
        to: { self: self("/status"), name: t.to, id: "1" },
        hasScreen: false,
        isGlobal: false,
        isInitial: false,
        isAvailable: true,
        isConditional: false,
        isLooped: false,
      }));
      return { status: 200, body: { expand: "transitions", transitions } };
    }
    if (sub === "/transitions" && req.method === "POST") {
      const id = (req.body as { transition?: { id?: unknown } } | undefined)?.transition?.id;
      const transition = (issue.workflow[issue.status] ?? []).find((t) => t.id === id);
      if (!transition)
        return {
          status: 400,
          body: { errorMessages: [`Transition id '${String(id)}' is not valid for this issue.`], errors: {} },
        };
      issue.status = transition.to;
      return { status: 204 };
    }
    return { status: 405 };
  }

  private commentJson(id: string, self: (path: string) => string) {
    const author = { accountId: "5b10ac8d82e05b22cc7d4ef5", displayName: "hookmesh", active: true };
    return {
      self: self(`/comment/${id}`),
      id,
      author,
      body: this.comments.get(id)!.body,
      updateAuthor: author,
      created: "2026-11-23T10:00:00.000+0000",
      updated: "2026-11-23T10:00:00.000+0000",
      jsdPublic: true,
    };
  }
}

/** An ADF document of one paragraph per argument. */
export function adf(...paragraphs: string[]) {
  return {
    type: "doc",
    version: 1,
    content: paragraphs.map((text) => ({ type: "paragraph", content: [{ type: "text", text }] })),
  };
}
