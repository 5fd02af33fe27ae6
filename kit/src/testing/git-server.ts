import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";

/**
 * Runs git in `cwd` for a test's or a bench's setup (repositories, commits, pushes), with none
 * of the machine's configuration and a fixed author, and returns its output.
 */
export function testGit(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_AUTHOR_NAME: "Octo Cat",
      GIT_AUTHOR_EMAIL: "octo@example.com",
      GIT_COMMITTER_NAME: "Octo Cat",
      GIT_COMMITTER_EMAIL: "octo@example.com",
    },
  });
}

/** Debian's (and most distributions') smart-HTTP CGI program. */
const GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend";

/** One request the git server answered, as a test reads it. */
export interface GitRequest {
  method: string;
  /** `owner/repo` of the URL, without `.git`. */
  repository: string;
  /** `info/refs`, `git-upload-pack`, `git-receive-pack`. */
  endpoint: string;
  /** The token of its `x-access-token` Basic credentials; "" without. */
  token: string;
  status: number;
  /** Protocol v2 command of an upload-pack POST: `ls-refs` or `fetch`. */
  command?: string;
  /** Objects the client said it has (`have` lines): a fetch into a populated repository has some. */
  haves: number;
  wants: number;
}

export interface GitServerOptions {
  /**
   * Whether a token may read `owner/repo`. Refused: 401 without Basic `x-access-token` credentials,
   * 404 (as GitHub answers, not to tell a repository exists) with credentials that may not read it.
   */
  allows(token: string, repository: string): boolean;
}

/**
 * A git smart-HTTP server on loopback, as GitHub serves repositories: `git http-backend` behind
 * a node CGI wrapper that takes only HTTP Basic `x-access-token:<token>`, and logs every request
 * (with the negotiation's `have` and `want` counts, so that a test can tell a clone from a fetch).
 * Repositories are bare, under `{root}/{owner}/{repo}.git`; `createRepository` seeds one.
 */
export class GitServer {
  readonly requests: GitRequest[] = [];

  private constructor(
    private readonly server: Server,
    readonly root: string,
    readonly url: string,
    private readonly options: GitServerOptions,
  ) {}

  static async start(options: GitServerOptions): Promise<GitServer> {
    const root = await mkdtemp(join(tmpdir(), "hookmesh-git-server-"));
    let git: GitServer | undefined;
    const server = createServer((req, res) => {
      git!.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(err));
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    git = new GitServer(server, root, `http://127.0.0.1:${port}`, options);
    return git;
  }

  /** The bare repository of `owner/repo` on disk. */
  path(repository: string): string {
    return join(this.root, `${repository}.git`);
  }

  /**
   * A bare repository with one commit per entry of `commits` (files by path), on `branch`, and
   * `refs` pointing at given commits (e.g. `refs/pull/1/head` at the last). Returns the commits' SHAs.
   */
  async createRepository(
    repository: string,
    commits: Record<string, string>[],
    { branch = "main", refs = {} }: { branch?: string; refs?: Record<string, number> } = {},
  ): Promise<string[]> {
    const bare = this.path(repository);
    await mkdir(bare, { recursive: true });
    await git(["init", "-q", "--bare", "-b", branch, bare]);
    await git(["-C", bare, "config", "uploadpack.allowAnySHA1InWant", "true"]);
    const work = await mkdtemp(join(tmpdir(), "hookmesh-git-seed-"));
    const shas: string[] = [];
    try {
      await git(["init", "-q", "-b", branch, work]);
      for (const [i, files] of commits.entries()) {
        for (const [path, content] of Object.entries(files)) {
          await mkdir(dirname(join(work, path)), { recursive: true });
          await writeFile(join(work, path), content);
        }
        await git(["-C", work, "add", "-A"]);
        await git(["-C", work, "commit", "-q", "-m", `commit ${i + 1}`], {
          GIT_AUTHOR_NAME: "seed",
          GIT_AUTHOR_EMAIL: "seed@example.com",
          GIT_COMMITTER_NAME: "seed",
          GIT_COMMITTER_EMAIL: "seed@example.com",
        });
        shas.push((await git(["-C", work, "rev-parse", "HEAD"])).trim());
      }
      await git(["-C", work, "push", "-q", bare, `${branch}:refs/heads/${branch}`]);
      for (const [ref, index] of Object.entries(refs)) await git(["-C", bare, "update-ref", ref, shas[index]!]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    return shas;
  }

  /** Upload-pack requests that fetched objects (not only listed refs), of a repository. */
  fetches(repository: string): GitRequest[] {
    return this.requests.filter(
      (r) => r.repository === repository && r.endpoint === "git-upload-pack" && r.command === "fetch",
    );
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.root, { recursive: true, force: true });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const match = /^\/([^/]+\/[^/]+)\.git\/(info\/refs|git-upload-pack|git-receive-pack)$/.exec(url.pathname);
    const body = await readBody(req);
    const token = basicToken(req.headers.authorization);
    const entry: GitRequest = {
      method: req.method ?? "GET",
      repository: match?.[1] ?? url.pathname,
      endpoint: match?.[2] ?? "",
      token: token ?? "",
      status: 0,
      haves: 0,
      wants: 0,
    };
    this.requests.push(entry);
    if (entry.endpoint === "git-upload-pack") Object.assign(entry, negotiation(body, req.headers["content-encoding"]));
    const refuse = (status: number, text: string, headers: Record<string, string> = {}) => {
      entry.status = status;
      res.writeHead(status, { "content-type": "text/plain", ...headers });
      res.end(text);
    };
    if (!match) return refuse(404, "Not Found");
    if (token === undefined) return refuse(401, "Authentication required", { "www-authenticate": 'Basic realm="git"' });
    if (!this.options.allows(token, match[1]!)) return refuse(404, "Repository not found.");
    await this.cgi(req, url, body, entry, res);
  }

  private async cgi(req: IncomingMessage, url: URL, body: Buffer, entry: GitRequest, res: ServerResponse) {
    const child = spawn(GIT_HTTP_BACKEND, [], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        GIT_PROJECT_ROOT: this.root,
        GIT_HTTP_EXPORT_ALL: "1",
        REQUEST_METHOD: req.method ?? "GET",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        CONTENT_LENGTH: String(body.length),
        REMOTE_USER: "x-access-token",
        REMOTE_ADDR: req.socket.remoteAddress ?? "",
        ...(req.headers["content-encoding"] && { HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"]) }),
        ...(req.headers["git-protocol"] && { GIT_PROTOCOL: String(req.headers["git-protocol"]) }),
      },
      stdio: ["pipe", "pipe", "ignore"],
    });
    // A backend that answers before reading all of the body (a refusal) closes its stdin early.
    child.stdin.on("error", () => {});
    child.stdin.end(body);
    const chunks: Buffer[] = [];
    for await (const chunk of child.stdout) chunks.push(chunk as Buffer);
    const out = Buffer.concat(chunks);
    const split = out.indexOf("\r\n\r\n");
    const head = out.subarray(0, split).toString("latin1");
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of head.split("\r\n")) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "status") status = Number.parseInt(value, 10);
      else if (name !== "") headers[name] = value;
    }
    entry.status = status;
    res.writeHead(status, headers);
    res.end(out.subarray(split + 4));
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function basicToken(header: string | undefined): string | undefined {
  const encoded = /^Basic (.+)$/i.exec(header ?? "")?.[1];
  if (encoded === undefined) return undefined;
  const [user, ...rest] = Buffer.from(encoded, "base64").toString("utf8").split(":");
  return user === "x-access-token" ? rest.join(":") : undefined;
}

/** The command, wants and haves of an upload-pack request body (pkt-lines, maybe gzipped). */
function negotiation(body: Buffer, encoding: string | string[] | undefined): Partial<GitRequest> {
  const text = (encoding === "gzip" ? gunzipSync(body) : body).toString("latin1");
  // pkt-lines: a 4-hex-digit length, then the line, often without a newline before the next length.
  const command = /command=([a-z-]+)/.exec(text)?.[1];
  return {
    ...(command !== undefined && { command }),
    haves: text.match(/[0-9a-f]{4}have [0-9a-f]{40}/g)?.length ?? 0,
    wants: text.match(/[0-9a-f]{4}want [0-9a-f]{40}/g)?.length ?? 0,
  };
}

function git(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tmpdir(), GIT_CONFIG_NOSYSTEM: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`git ${args[0]}: ${err.trim()}`))));
  });
}
