import { execFileSync } from "node:child_process";
import { type KeyObject, randomBytes, verify } from "node:crypto";
import { FakeProvider, type ReceivedRequest, type Reply } from "@hookmesh/kit/testing";
import { GitObjects } from "./fake-git-data.js";

/**
 * A local stand-in for GitHub's REST API (or GitHub Enterprise Server's, under `/api/v3`), at
 * the paths, methods, headers and JSON shapes GitHub documents: issue comments, reactions
 * (201 new, 200 existing), issues, pull requests (read, list by head, open), collaborators'
 * permissions, the Git Data API (blobs, trees on a base tree, commits, refs created and
 * updated, fast-forward or forced) over real git ids,
 * `{"message", "documentation_url"}` errors,
 * rate-limit headers, and GitHub App installation tokens bought with an RS256 JWT, which it
 * verifies with the App's public key. Tests script answers ahead of it.
 */

type Json = Record<string, unknown>;

/** The claims of a JWT GitHub accepted, for tests to check. */
export interface JwtSeen {
  header: Json;
  claims: { iat: number; exp: number; iss: string };
  /** When it was verified (epoch seconds). */
  now: number;
}

export interface FakeGitHubOptions {
  /** `/api/v3` to stand in for GitHub Enterprise Server; "" for api.github.com. */
  basePath?: string;
  /** Personal access tokens it accepts. */
  tokens?: string[];
  /** A GitHub App: its id, the public key its JWTs verify with, and the installations it has. */
  app?: { id: string; publicKey: KeyObject; installations: bigint[] };
  /** How long the installation tokens it hands out live. Default one hour, as on GitHub. */
  tokenLifetimeMs?: number;
}

const DOCS = "https://docs.github.com/rest";

/** The legacy `permission` GitHub answers beside each role's `role_name`. */
const BASE_PERMISSIONS: Record<string, string> = {
  admin: "admin",
  maintain: "write",
  write: "write",
  triage: "read",
  read: "read",
  none: "none",
};

interface InstallationTokenRecord {
  installationId: string;
  expiresAt: number;
  /** The repositories it is limited to, when it is. */
  repositories?: string[];
  permissions: Json;
}

export class FakeGitHub extends FakeProvider {
  /** Issues and pull requests by `owner/repo#number`. */
  readonly issues = new Map<string, Json>();
  readonly pulls = new Map<string, Json>();
  /** Comments by id. */
  readonly comments = new Map<number, Json & { repo: string }>();
  /** Reactions by `{on}:{content}` (this fake has one user). */
  readonly reactions = new Map<string, Json>();
  readonly installationTokens = new Map<string, InstallationTokenRecord>();
  /** Repository roles (`admin`, `maintain`, `write`, `triage`, `read`) by `owner/repo:login`; anyone else reads. */
  readonly roles = new Map<string, string>();
  readonly jwts: JwtSeen[] = [];
  /**
   * The installation each repository (`owner/repo`) belongs to, for `GET /repos/{o}/{r}/installation`
   * and for tokens limited to repositories; a repository not listed is in every installation.
   */
  readonly installationOf = new Map<string, bigint>();
  /** Git objects, shared by all repositories (ids are content), and refs by `owner/repo:refs/heads/x`. */
  readonly git = new GitObjects();
  readonly refs = new Map<string, string>();
  tokenLifetimeMs: number;

  private readonly tokens: Set<string>;
  private nextId = 1_000_000_001;

  constructor(private readonly options: FakeGitHubOptions = {}) {
    super(options.basePath);
    this.tokens = new Set(options.tokens ?? []);
    this.tokenLifetimeMs = options.tokenLifetimeMs ?? 60 * 60_000;
  }

  /** The requests, as `METHOD path?query body`. */
  lines(): string[] {
    return this.received.map((r) => `${r.method} ${r.path}${r.query}${r.text ? ` ${r.text}` : ""}`);
  }

  /** Requests other than installation token requests. */
  apiRequests(): ReceivedRequest[] {
    return this.received.filter((r) => !r.path.startsWith("/app/"));
  }

  tokenRequests(): ReceivedRequest[] {
    return this.received.filter((r) => r.path.startsWith("/app/"));
  }

  addIssue(owner: string, repo: string, number: number, overrides: Json = {}): Json {
    const issue = githubIssue(this.origin, owner, repo, number, overrides);
    this.issues.set(`${owner}/${repo}#${number}`, issue);
    return issue;
  }

  /** A pull request, which is also an issue. */
  addPull(owner: string, repo: string, number: number, overrides: Json = {}): Json {
    const pull = githubPull(this.origin, owner, repo, number, overrides);
    this.addIssue(owner, repo, number, {
      title: pull.title,
      body: pull.body,
      pull_request: { url: pull.url, html_url: pull.html_url, merged_at: null },
    });
    this.pulls.set(`${owner}/${repo}#${number}`, pull);
    return pull;
  }

  /** A repository's objects and branches, copied from a real repository (a bare mirror). */
  importRepository(owner: string, repo: string, gitDir: string): void {
    this.git.importRepository(gitDir);
    const refs = execFileSync("git", ["--git-dir", gitDir, "for-each-ref", "--format=%(refname) %(objectname)"], {
      encoding: "utf8",
    });
    for (const line of refs.trim().split("\n")) {
      const [ref, sha] = line.split(" ") as [string, string];
      if (ref.startsWith("refs/heads/")) this.refs.set(`${owner}/${repo}:${ref}`, sha);
    }
  }

  /** A branch's head commit, if the branch exists. */
  branch(owner: string, repo: string, name: string): string | undefined {
    return this.refs.get(`${owner}/${repo}:refs/heads/${name}`);
  }

  /** The pull requests of a repository. */
  pullsOf(owner: string, repo: string): Json[] {
    return [...this.pulls.entries()].filter(([key]) => key.startsWith(`${owner}/${repo}#`)).map(([, pull]) => pull);
  }

  addToken(token: string): void {
    this.tokens.add(token);
  }

  /** Revokes every installation token handed out so far. */
  revokeInstallationTokens(): void {
    this.installationTokens.clear();
  }

  protected override headers(): Record<string, string> {
    return {
      "x-github-api-version-selected": "2022-11-28",
      "x-ratelimit-limit": "5000",
      "x-ratelimit-remaining": "4999",
      "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000) + 3600),
      "x-ratelimit-used": "1",
      "x-ratelimit-resource": "core",
    };
  }

  /** GitHub's own behaviour. */
  protected respond(req: ReceivedRequest): Reply {
    if (req.text !== "" && !String(req.headers["content-type"]).startsWith("application/json")) {
      return error(400, "Problems parsing JSON");
    }
    const mint = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(req.path);
    if (mint) return req.method === "POST" ? this.createInstallationToken(req, mint[1]!) : error(404, "Not Found");

    const repo = /^\/repos\/([^/]+)\/([^/]+)(\/.*)$/.exec(req.path);
    if (!repo) return error(404, "Not Found");
    const [, owner, name, rest] = repo as unknown as [string, string, string, string];
    const full = `${owner}/${name}`;
    if (rest === "/installation" && req.method === "GET") return this.findInstallation(req, full);
    const denied = this.authorize(req, full);
    if (denied) return denied;

    let m: RegExpExecArray | null;
    if ((m = /^\/issues\/(\d+)\/comments$/.exec(rest)) && req.method === "POST")
      return this.createComment(full, Number(m[1]), req.body as Json);
    if ((m = /^\/issues\/comments\/(\d+)$/.exec(rest))) {
      const comment = this.comments.get(Number(m[1]));
      if (!comment || comment.repo !== full) return error(404, "Not Found");
      if (req.method === "PATCH") return this.updateComment(comment, req.body as Json);
      if (req.method === "DELETE") {
        this.comments.delete(Number(m[1]));
        return { status: 204 };
      }
      if (req.method === "GET") return { status: 200, body: publicComment(comment) };
    }
    if ((m = /^\/issues\/(\d+)\/reactions$/.exec(rest)) && req.method === "POST") {
      if (!this.issues.has(`${full}#${m[1]}`)) return error(404, "Not Found");
      return this.react(`issue:${full}#${m[1]}`, req.body as Json);
    }
    if ((m = /^\/issues\/comments\/(\d+)\/reactions$/.exec(rest)) && req.method === "POST") {
      const comment = this.comments.get(Number(m[1]));
      if (!comment || comment.repo !== full) return error(404, "Not Found");
      return this.react(`comment:${m[1]}`, req.body as Json);
    }
    if ((m = /^\/issues\/(\d+)$/.exec(rest)) && req.method === "GET") {
      const issue = this.issues.get(`${full}#${m[1]}`);
      return issue ? { status: 200, body: issue } : error(404, "Not Found");
    }
    if ((m = /^\/collaborators\/([^/]+)\/permission$/.exec(rest)) && req.method === "GET") {
      const role = this.roles.get(`${full}:${decodeURIComponent(m[1]!)}`) ?? "read";
      return {
        status: 200,
        body: { permission: BASE_PERMISSIONS[role] ?? "read", role_name: role, user: { login: m[1] } },
      };
    }
    if (rest.startsWith("/git/")) return this.gitData(full, rest.slice("/git".length), req);
    if (rest === "/pulls" && req.method === "GET") return this.listPulls(full, req.query);
    if (rest === "/pulls" && req.method === "POST") return this.openPull(full, req.body as Json);
    if ((m = /^\/pulls\/(\d+)$/.exec(rest)) && req.method === "GET") {
      const pull = this.pulls.get(`${full}#${m[1]}`);
      return pull ? { status: 200, body: pull } : error(404, "Not Found");
    }
    return error(404, "Not Found");
  }

  /** The Git Data API: `/repos/{o}/{r}/git/…`, as GitHub answers it. */
  private gitData(repo: string, path: string, req: ReceivedRequest): Reply {
    const body = (req.body ?? {}) as Json;
    let m: RegExpExecArray | null;
    if ((m = /^\/commits\/([0-9a-f]{40})$/.exec(path)) && req.method === "GET") {
      const commit = this.git.get(m[1]!, "commit");
      if (!commit) return error(404, "Not Found");
      return { status: 200, body: this.commitJson(repo, m[1]!) };
    }
    if (path === "/blobs" && req.method === "POST") {
      if (typeof body.content !== "string") return validation("Blob", "content");
      const content = Buffer.from(body.content, body.encoding === "base64" ? "base64" : "utf8");
      const sha = this.git.putBlob(content);
      return { status: 201, body: { sha, url: `${this.url}/repos/${repo}/git/blobs/${sha}` } };
    }
    if (path === "/trees" && req.method === "POST") {
      if (!Array.isArray(body.tree)) return validation("Tree", "tree");
      const base = body.base_tree;
      if (base !== undefined && (typeof base !== "string" || !this.git.get(base, "tree")))
        return error(422, "Invalid tree info");
      const changes = (body.tree as Json[]).map((entry) => ({
        path: String(entry.path),
        mode: String(entry.mode),
        sha: entry.sha === null ? null : String(entry.sha),
      }));
      if (changes.some((c) => !["100644", "100755", "120000", "160000", "040000"].includes(c.mode)))
        return error(422, "Invalid tree info");
      const sha = this.git.putTree(base as string | undefined, changes);
      if (sha === undefined) return error(422, "Invalid tree info");
      return { status: 201, body: { sha, url: `${this.url}/repos/${repo}/git/trees/${sha}`, truncated: false } };
    }
    if (path === "/commits" && req.method === "POST") {
      const parents = Array.isArray(body.parents) ? body.parents.map(String) : [];
      if (typeof body.message !== "string" || typeof body.tree !== "string") return validation("Commit", "message");
      if (!this.git.get(body.tree, "tree") || parents.some((p) => !this.git.get(p, "commit")))
        return error(422, "Invalid request.");
      const author = (body.author ?? { name: "hookmesh[bot]", email: "bot@example.com" }) as Json;
      const sha = this.git.putCommit({
        type: "commit",
        tree: body.tree,
        parents,
        message: body.message,
        author: { name: String(author.name), email: String(author.email), date: new Date().toISOString() },
      });
      return { status: 201, body: this.commitJson(repo, sha) };
    }
    if ((m = /^\/ref\/(heads\/.+)$/.exec(path)) && req.method === "GET") {
      const sha = this.refs.get(`${repo}:refs/${m[1]}`);
      return sha ? { status: 200, body: this.refJson(repo, `refs/${m[1]}`, sha) } : error(404, "Not Found");
    }
    if (path === "/refs" && req.method === "POST") {
      const ref = String(body.ref ?? "");
      const sha = String(body.sha ?? "");
      if (!/^refs\/[^/]+\/.+/.test(ref))
        return error(422, "Reference name must start with 'refs/' and have at least two slashes.");
      if (!this.git.get(sha, "commit")) return error(422, "Object does not exist");
      if (this.refs.has(`${repo}:${ref}`)) return error(422, "Reference already exists");
      this.refs.set(`${repo}:${ref}`, sha);
      return { status: 201, body: this.refJson(repo, ref, sha) };
    }
    if ((m = /^\/refs\/(heads\/.+)$/.exec(path)) && req.method === "PATCH") {
      const ref = `refs/${m[1]}`;
      const current = this.refs.get(`${repo}:${ref}`);
      const sha = String(body.sha ?? "");
      if (current === undefined) return error(422, "Reference does not exist");
      if (!this.git.get(sha, "commit")) return error(422, "Object does not exist");
      if (body.force !== true && !this.git.reaches(sha, current)) return error(422, "Update is not a fast forward");
      this.refs.set(`${repo}:${ref}`, sha);
      return { status: 200, body: this.refJson(repo, ref, sha) };
    }
    return error(404, "Not Found");
  }

  /** `GET /pulls`: `head=owner:branch` and `state` (open by default) filter, as on GitHub. */
  private listPulls(repo: string, query: string): Reply {
    const params = new URLSearchParams(query);
    const state = params.get("state") ?? "open";
    const head = params.get("head");
    const [owner, name] = repo.split("/") as [string, string];
    const pulls = this.pullsOf(owner, name).filter((pull) => {
      if (state !== "all" && pull.state !== state) return false;
      return head === null || (pull.head as Json).label === head;
    });
    return { status: 200, body: pulls };
  }

  /** `POST /pulls`: one open pull request per head and base; the head must be a branch. */
  private openPull(repo: string, body: Json | undefined): Reply {
    const [owner, name] = repo.split("/") as [string, string];
    const head = String(body?.head ?? "");
    const base = String(body?.base ?? "");
    if (typeof body?.title !== "string" || body.title === "") return validation("PullRequest", "title");
    const headSha = this.branch(owner, name, head);
    const baseSha = this.branch(owner, name, base);
    if (!headSha || !baseSha)
      return {
        status: 422,
        body: {
          message: "Validation Failed",
          errors: [{ resource: "PullRequest", field: headSha ? "base" : "head", code: "invalid" }],
          documentation_url: DOCS,
        },
      };
    const label = `${owner}:${head}`;
    if (
      this.pullsOf(owner, name).some(
        (p) => p.state === "open" && (p.head as Json).label === label && (p.base as Json).ref === base,
      )
    )
      return {
        status: 422,
        body: {
          message: "Validation Failed",
          errors: [{ resource: "PullRequest", code: "custom", message: `A pull request already exists for ${label}.` }],
          documentation_url: DOCS,
        },
      };
    const numbers = [...this.issues.keys()]
      .filter((key) => key.startsWith(`${repo}#`))
      .map((key) => Number(key.split("#")[1]));
    const number = Math.max(0, ...numbers) + 1;
    return {
      status: 201,
      body: this.addPull(owner, name, number, {
        title: body.title,
        body: typeof body.body === "string" ? body.body : null,
        draft: false,
        user: { login: "hookmesh[bot]", id: 41898282, type: "Bot" },
        head: { label, ref: head, sha: headSha, repo: { name } },
        base: { label: `${owner}:${base}`, ref: base, sha: baseSha, repo: { name } },
      }),
    };
  }

  private commitJson(repo: string, sha: string): Json {
    const commit = this.git.get(sha, "commit")!;
    return {
      sha,
      url: `${this.url}/repos/${repo}/git/commits/${sha}`,
      message: commit.message,
      author: commit.author,
      committer: commit.author,
      tree: { sha: commit.tree, url: `${this.url}/repos/${repo}/git/trees/${commit.tree}` },
      parents: commit.parents.map((parent) => ({
        sha: parent,
        url: `${this.url}/repos/${repo}/git/commits/${parent}`,
      })),
    };
  }

  private refJson(repo: string, ref: string, sha: string): Json {
    return {
      ref,
      url: `${this.url}/repos/${repo}/git/${ref}`,
      object: { type: "commit", sha, url: `${this.url}/repos/${repo}/git/commits/${sha}` },
    };
  }

  /** Bearer: a personal token, or an unexpired installation token with access to the repository. */
  private authorize(req: ReceivedRequest, repo: string): Reply | undefined {
    const auth = req.headers.authorization ?? "";
    const token = /^(?:Bearer|token) (.+)$/.exec(auth)?.[1];
    if (token === undefined) return error(401, "Requires authentication");
    if (this.tokens.has(token)) return undefined;
    const installation = this.installationTokens.get(token);
    if (!installation || installation.expiresAt <= Date.now()) return error(401, "Bad credentials");
    if (installation.repositories && !installation.repositories.includes(repo.split("/")[1]!))
      return error(404, "Not Found");
    return undefined;
  }

  /** The App's JWT on a request: an error reply, or the App. */
  private appOf(req: ReceivedRequest): Reply | NonNullable<FakeGitHubOptions["app"]> {
    const app = this.options.app;
    const jwt = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (!app || jwt === undefined) return error(401, "A JSON web token could not be decoded");
    const problem = this.verifyJwt(jwt, app);
    return problem !== undefined ? error(401, problem) : app;
  }

  private findInstallation(req: ReceivedRequest, repo: string): Reply {
    const app = this.appOf(req);
    if (!("publicKey" in app)) return app;
    const id = this.installationOf.get(repo);
    if (id === undefined || !app.installations.includes(id)) return error(404, "Not Found");
    return { status: 200, body: { id: Number(id), app_id: Number(app.id), target_type: "Organization" } };
  }

  private createInstallationToken(req: ReceivedRequest, installationId: string): Reply {
    const app = this.appOf(req);
    if (!("publicKey" in app)) return app;
    if (!app.installations.some((id) => id.toString() === installationId)) return error(404, "Not Found");
    const body = (req.body ?? {}) as { repositories?: unknown; permissions?: Json };
    if (body.repositories !== undefined && !Array.isArray(body.repositories)) return error(422, "Invalid request.");
    const outside = ((body.repositories ?? []) as string[]).some((name) =>
      [...this.installationOf].some(([full, id]) => full.endsWith(`/${name}`) && id.toString() !== installationId),
    );
    if (outside) {
      return error(
        422,
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
      );
    }
    const token = `ghs_${randomBytes(18).toString("base64url")}`;
    const expiresAt = Date.now() + this.tokenLifetimeMs;
    const permissions = body.permissions ?? {
      contents: "write",
      issues: "write",
      pull_requests: "write",
      metadata: "read",
    };
    const repositories = body.repositories as string[] | undefined;
    this.installationTokens.set(token, {
      installationId,
      expiresAt,
      permissions,
      ...(repositories && { repositories }),
    });
    return {
      status: 201,
      body: {
        token,
        expires_at: new Date(expiresAt).toISOString(),
        permissions,
        repository_selection: repositories ? "selected" : "all",
        ...(repositories && {
          repositories: repositories.map((name, i) => ({ id: 1296269 + i, name, full_name: `acme/${name}` })),
        }),
      },
    };
  }

  /** GitHub's checks on an App's JWT: RS256 signed by the App's key, issued by it, not expired, at most 10 minutes long. */
  private verifyJwt(jwt: string, app: NonNullable<FakeGitHubOptions["app"]>): string | undefined {
    const parts = jwt.split(".");
    if (parts.length !== 3) return "A JSON web token could not be decoded";
    const [header, payload, signature] = parts as [string, string, string];
    let decodedHeader: Json;
    let claims: Json;
    try {
      decodedHeader = JSON.parse(Buffer.from(header, "base64url").toString()) as Json;
      claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as Json;
    } catch {
      return "A JSON web token could not be decoded";
    }
    if (decodedHeader.alg !== "RS256") return "'alg' must be RS256";
    if (
      !verify("RSA-SHA256", Buffer.from(`${header}.${payload}`), app.publicKey, Buffer.from(signature, "base64url"))
    ) {
      return "A JSON web token could not be decoded";
    }
    const now = Math.floor(Date.now() / 1000);
    const { iat, exp, iss } = claims as { iat: unknown; exp: unknown; iss: unknown };
    if (typeof iat !== "number" || typeof exp !== "number")
      return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
    if (String(iss) !== app.id) return `'Issuer' claim ('iss') must be an Integer or a Client ID`;
    if (iat > now + 60)
      return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
    if (exp <= now)
      return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
    if (exp - iat > 600) return "'Expiration time' claim ('exp') is too far in the future";
    this.jwts.push({ header: decodedHeader, claims: { iat, exp, iss: String(iss) }, now });
    return undefined;
  }

  private createComment(repo: string, number: number, body: Json | undefined): Reply {
    const issue = this.issues.get(`${repo}#${number}`);
    if (!issue) return error(404, "Not Found");
    if (issue.locked === true) return error(403, "Unable to create comment because issue is locked.");
    if (typeof body?.body !== "string" || body.body === "") {
      return {
        status: 422,
        body: {
          message: "Validation Failed",
          errors: [{ resource: "IssueComment", code: "missing_field", field: "body" }],
          documentation_url: DOCS,
        },
      };
    }
    const id = this.nextId++;
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
    const comment = {
      repo,
      id,
      node_id: `IC_kwDO${id}`,
      url: `${this.url}/repos/${repo}/issues/comments/${id}`,
      html_url: `${this.origin}/${repo}/issues/${number}#issuecomment-${id}`,
      issue_url: `${this.url}/repos/${repo}/issues/${number}`,
      body: body.body,
      user: { login: "hookmesh[bot]", id: 41898282, type: "Bot" },
      created_at: now,
      updated_at: now,
      author_association: "NONE",
    };
    this.comments.set(id, comment);
    return { status: 201, body: publicComment(comment) };
  }

  private updateComment(comment: Json & { repo: string }, body: Json | undefined): Reply {
    if (typeof body?.body !== "string" || body.body === "") {
      return {
        status: 422,
        body: {
          message: "Validation Failed",
          errors: [{ resource: "IssueComment", code: "missing_field", field: "body" }],
          documentation_url: DOCS,
        },
      };
    }
    comment.body = body.body;
    comment.updated_at = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
    return { status: 200, body: publicComment(comment) };
  }

  private react(on: string, body: Json | undefined): Reply {
    const content = String(body?.content ?? "");
    if (!["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"].includes(content)) {
      return {
        status: 422,
        body: {
          message: "Validation Failed",
          errors: [
            { resource: "Reaction", code: "custom", field: "content", message: "content is not included in the list" },
          ],
          documentation_url: DOCS,
        },
      };
    }
    const existing = this.reactions.get(`${on}:${content}`);
    if (existing) return { status: 200, body: existing };
    const reaction = {
      id: this.nextId++,
      node_id: "REA_lADO",
      user: { login: "hookmesh[bot]", id: 41898282 },
      content,
      created_at: new Date().toISOString(),
    };
    this.reactions.set(`${on}:${content}`, reaction);
    return { status: 201, body: reaction };
  }
}

/** GitHub's 422 for a missing or invalid field. */
function validation(resource: string, field: string): Reply {
  return {
    status: 422,
    body: {
      message: "Validation Failed",
      errors: [{ resource, field, code: "missing_field" }],
      documentation_url: DOCS,
    },
  };
}

/** GitHub's error body. */
export function error(status: number, message: string): Reply {
  return { status, body: { message, documentation_url: DOCS, status: String(status) } };
}

function publicComment(comment: Json): Json {
  const { repo: _repo, ...rest } = comment;
  return rest;
}

/** An issue as GET /repos/{o}/{r}/issues/{n} returns it (the fields hookmesh reads, and some it does not). */
export function githubIssue(web: string, owner: string, repo: string, number: number, overrides: Json = {}): Json {
  return {
    id: 1_000_000 + number,
    node_id: "I_kwDOABCD",
    url: `https://api.github.com/repos/${owner}/${repo}/issues/${number}`,
    html_url: `${web}/${owner}/${repo}/issues/${number}`,
    number,
    state: "open",
    state_reason: null,
    title: "Crash when the config file is empty",
    body: "Steps:\n1. `touch config.yml`\n2. run it\n\n@hookmesh please fix",
    user: { login: "octocat", id: 1, type: "User" },
    labels: [
      { id: 208045946, name: "bug", color: "f29513", default: true },
      { id: 208045947, name: "good first issue", color: "7057ff", default: true },
    ],
    assignees: [],
    locked: false,
    comments: 3,
    created_at: "2026-04-10T08:23:11Z",
    updated_at: "2026-05-02T14:55:00Z",
    closed_at: null,
    author_association: "MEMBER",
    ...overrides,
  };
}

/** A pull request as GET /repos/{o}/{r}/pulls/{n} returns it. */
export function githubPull(web: string, owner: string, repo: string, number: number, overrides: Json = {}): Json {
  return {
    id: 2_000_000 + number,
    url: `https://api.github.com/repos/${owner}/${repo}/pulls/${number}`,
    html_url: `${web}/${owner}/${repo}/pull/${number}`,
    number,
    state: "open",
    locked: false,
    title: "Handle an empty config file",
    body: null,
    user: { login: "hubot", id: 2, type: "User" },
    draft: true,
    merged: false,
    mergeable: true,
    head: {
      label: "hubot:fix-empty-config",
      ref: "fix-empty-config",
      sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e",
      repo: { name: repo },
    },
    base: {
      label: `${owner}:main`,
      ref: "main",
      sha: "e5bd3914e2e596debea16f433f57875b5b90bcd6",
      repo: { name: repo },
    },
    ...overrides,
  };
}
