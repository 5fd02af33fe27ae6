import { FakeProvider, type ReceivedRequest, type Reply } from "@hookmesh/kit/testing";

type Json = Record<string, unknown>;

const USERS: Readonly<Record<string, Json>> = {
  "88": { type: "user", id: "88", name: "Jane Developer", email: "jane@example.com" },
  "89": { type: "user", id: "89", name: "Ola Nordmann", email: "ola@example.com" },
};
const TEAMS: Readonly<Record<string, Json>> = { "5": { type: "team", id: "5", name: "backend" } };
const STATUSES = ["resolved", "resolvedInNextRelease", "unresolved", "ignored"];

/** An issue as Sentry's GET /issues/{id}/ returns it (the fields hookmesh reads, and some it does not). */
export function sentryIssue(id: string, overrides: Json = {}): Json {
  return {
    id,
    shortId: "PUMP-STATION-1A",
    title: "TypeError: Cannot read properties of undefined (reading 'map')",
    culprit: "components/Dashboard.render",
    permalink: `https://acme.sentry.io/issues/${id}/`,
    level: "error",
    status: "unresolved",
    statusDetails: {},
    isPublic: false,
    platform: "javascript",
    project: { id: "111", name: "Pump Station", slug: "pump-station" },
    type: "error",
    assignedTo: null,
    count: "1243",
    userCount: 147,
    numComments: 0,
    firstSeen: "2026-04-10T08:23:11.000Z",
    lastSeen: "2026-05-02T14:55:00.000Z",
    ...overrides,
  };
}

/**
 * A local stand-in for Sentry's web API (`/api/0`), at the paths, methods, headers and JSON
 * shapes Sentry documents: issues (groups) at `/issues/{id}/`, their notes at
 * `/issues/{id}/comments/` (also `notes/`), bearer tokens, `{"detail": …}` errors, and the
 * catch-all 404 for a path without its trailing slash. Tests script answers ahead of it.
 */
export class FakeSentry extends FakeProvider {
  readonly issues = new Map<string, Json>();
  /** Notes by id. */
  readonly notes = new Map<string, { issueId: string; text: string; dateCreated: string }>();
  /** The bearer tokens Sentry accepts. */
  readonly tokens = new Set<string>();
  private nextNoteId = 1000;

  constructor(token = "sntryu_test_token") {
    super("/api/0");
    this.tokens.add(token);
  }

  addIssue(id: string, overrides: Json = {}): Json {
    const issue = sentryIssue(id, overrides);
    this.issues.set(id, issue);
    return issue;
  }

  protected override headers(): Record<string, string> {
    return {
      "x-sentry-rate-limit-limit": "40",
      "x-sentry-rate-limit-remaining": "39",
      "x-sentry-rate-limit-reset": String(Math.ceil(Date.now() / 1000) + 1),
    };
  }

  /** Sentry's own behaviour. */
  protected respond(req: ReceivedRequest): Reply {
    const auth = req.headers.authorization;
    if (auth === undefined) return { status: 401, body: { detail: "Authentication credentials were not provided." } };
    if (!auth.startsWith("Bearer ") || !this.tokens.has(auth.slice("Bearer ".length)))
      return { status: 401, body: { detail: "Invalid token" } };
    if (req.text !== "" && !String(req.headers["content-type"]).startsWith("application/json")) {
      return { status: 415, body: { detail: `Unsupported media type "${req.headers["content-type"]}" in request.` } };
    }
    const issue = /^\/issues\/(\d+)\/$/.exec(req.path);
    const notes = /^\/issues\/(\d+)\/(?:comments|notes)\/$/.exec(req.path);
    const note = /^\/issues\/(\d+)\/(?:comments|notes)\/([^/]+)\/$/.exec(req.path);
    const group = this.issues.get((issue ?? notes ?? note)?.[1] ?? "");
    if (!issue && !notes && !note)
      return { status: 404, body: { info: "Route not found, did you forget a trailing slash?" } };
    if (!group) return { status: 404, body: { detail: "The requested resource does not exist" } };
    if (issue && req.method === "GET") return { status: 200, body: group };
    if (issue && req.method === "PUT") return this.updateIssue(group, req.body as Json);
    if (notes && req.method === "POST") return this.addNote(notes[1]!, req.body as Json);
    if (note && req.method === "PUT") return this.updateNote(note[1]!, note[2]!, req.body as Json);
    return { status: 405, body: { detail: `Method "${req.method}" not allowed.` } };
  }

  private updateIssue(group: Json, body: Json | undefined): Reply {
    const changes = body ?? {};
    if ("status" in changes && !STATUSES.includes(String(changes.status))) {
      return { status: 400, body: { status: [`"${String(changes.status)}" is not a valid choice.`] } };
    }
    if ("assignedTo" in changes) {
      const input = String(changes.assignedTo ?? "");
      const [kind, id] = input.includes(":")
        ? input.split(":", 2)
        : ["user", Object.values(USERS).find((u) => u.email === input || u.name === input)?.id];
      const actor = input === "" ? null : kind === "team" ? TEAMS[String(id)] : USERS[String(id)];
      if (actor === undefined) return { status: 400, body: { assignedTo: ["Unknown actor input"] } };
      group.assignedTo = actor;
    }
    if ("status" in changes) group.status = changes.status;
    return { status: 200, body: group };
  }

  private addNote(issueId: string, body: Json | undefined): Reply {
    const text = typeof body?.text === "string" ? body.text : "";
    if (text === "") return { status: 400, body: { text: ["This field is required."] } };
    if ([...this.notes.values()].some((n) => n.issueId === issueId && n.text === text)) {
      return { status: 400, body: { detail: "You have already posted that comment." } };
    }
    const id = String(this.nextNoteId++);
    this.notes.set(id, { issueId, text, dateCreated: new Date().toISOString() });
    return { status: 201, body: this.activity(id) };
  }

  private updateNote(issueId: string, noteId: string, body: Json | undefined): Reply {
    const note = this.notes.get(noteId);
    if (!note || note.issueId !== issueId)
      return { status: 404, body: { detail: "The requested resource does not exist" } };
    const text = typeof body?.text === "string" ? body.text : "";
    if (text === "") return { status: 400, body: { text: ["This field is required."] } };
    note.text = text;
    return { status: 200, body: this.activity(noteId) };
  }

  /** A note as Sentry serializes an activity. */
  private activity(id: string): Json {
    const note = this.notes.get(id)!;
    return {
      id,
      user: { id: "1", name: "hookmesh", username: "hookmesh", email: "hookmesh@example.com" },
      type: "note",
      data: { text: note.text },
      dateCreated: note.dateCreated,
    };
  }
}
