import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";

/**
 * The object store behind the fake GitHub's Git Data API: blobs, trees and commits with git's
 * own ids (SHA-1 over git's encodings), so a tree made through the API has the id `git
 * write-tree` gives the same files, and a test can compare the two. Seeded from a real
 * repository.
 */

export interface TreeEntry {
  name: string;
  /** `100644`, `100755`, `120000`, `160000`, or `40000` for a tree. */
  mode: string;
  sha: string;
}

export type GitObject =
  | { type: "blob"; content: Buffer }
  | { type: "tree"; entries: TreeEntry[] }
  | {
      type: "commit";
      tree: string;
      parents: string[];
      message: string;
      author: { name: string; email: string; date: string };
    };

/** A file of a flattened tree. */
export interface TreeFile {
  mode: string;
  content: Buffer;
}

export class GitObjects {
  readonly objects = new Map<string, GitObject>();

  /** Copies every object of a real repository (a bare mirror, say) in. */
  importRepository(gitDir: string): void {
    const list = execFileSync("git", ["--git-dir", gitDir, "cat-file", "--batch-all-objects", "--batch-check"], {
      encoding: "utf8",
    });
    for (const line of list.trim().split("\n")) {
      const [sha, type] = line.split(" ") as [string, string];
      const raw = execFileSync("git", ["--git-dir", gitDir, "cat-file", type, sha]);
      if (type === "blob") this.objects.set(sha, { type: "blob", content: raw });
      else if (type === "tree") this.objects.set(sha, { type: "tree", entries: parseTree(raw) });
      else if (type === "commit") this.objects.set(sha, parseCommit(raw.toString("utf8")));
    }
  }

  get<T extends GitObject["type"]>(sha: string, type: T): Extract<GitObject, { type: T }> | undefined {
    const object = this.objects.get(sha);
    return object?.type === type ? (object as Extract<GitObject, { type: T }>) : undefined;
  }

  putBlob(content: Buffer): string {
    return this.put({ type: "blob", content });
  }

  putCommit(commit: Extract<GitObject, { type: "commit" }>): string {
    return this.put(commit);
  }

  /**
   * A tree from `baseTree` with these changes (GitHub's `POST /git/trees` with `base_tree`):
   * an entry with a sha sets a path, one with a null sha removes it; emptied trees go.
   * Undefined when a sha is unknown.
   */
  putTree(
    baseTree: string | undefined,
    changes: { path: string; mode: string; sha: string | null }[],
  ): string | undefined {
    const files = new Map(baseTree ? this.flattenIds(baseTree) : []);
    for (const change of changes) {
      if (change.sha === null) {
        files.delete(change.path);
        continue;
      }
      if (!this.objects.has(change.sha)) return undefined;
      files.set(change.path, { mode: change.mode, sha: change.sha });
    }
    return this.writeTree(files, "");
  }

  /** Every file of a commit's tree, by path. */
  files(commitSha: string): Map<string, TreeFile> {
    const commit = this.get(commitSha, "commit");
    if (!commit) throw new Error(`no commit ${commitSha}`);
    const files = new Map<string, TreeFile>();
    for (const [path, { mode, sha }] of this.flattenIds(commit.tree)) {
      files.set(path, { mode, content: this.get(sha, "blob")!.content });
    }
    return files;
  }

  /** Whether `ancestor` is `sha` or in its history. */
  reaches(sha: string, ancestor: string): boolean {
    const pending = [sha];
    const seen = new Set<string>();
    while (pending.length > 0) {
      const next = pending.pop()!;
      if (next === ancestor) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      pending.push(...(this.get(next, "commit")?.parents ?? []));
    }
    return false;
  }

  private flattenIds(treeSha: string, prefix = ""): [string, { mode: string; sha: string }][] {
    const tree = this.get(treeSha, "tree");
    if (!tree) return [];
    return tree.entries.flatMap((entry) =>
      entry.mode === "40000"
        ? this.flattenIds(entry.sha, `${prefix}${entry.name}/`)
        : [[`${prefix}${entry.name}`, { mode: entry.mode, sha: entry.sha }] as [string, { mode: string; sha: string }]],
    );
  }

  private writeTree(files: Map<string, { mode: string; sha: string }>, prefix: string): string {
    const entries: TreeEntry[] = [];
    const dirs = new Set<string>();
    for (const [path, file] of files) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (slash === -1) entries.push({ name: rest, ...file });
      else dirs.add(rest.slice(0, slash));
    }
    for (const dir of dirs) entries.push({ name: dir, mode: "40000", sha: this.writeTree(files, `${prefix}${dir}/`) });
    return this.put({ type: "tree", entries });
  }

  private put(object: GitObject): string {
    const body = encode(object);
    const sha = createHash("sha1").update(`${object.type} ${body.byteLength}\0`).update(body).digest("hex");
    this.objects.set(sha, object);
    return sha;
  }
}

/** Git's encoding of an object's body. */
function encode(object: GitObject): Buffer {
  if (object.type === "blob") return object.content;
  if (object.type === "tree") {
    // Git orders entries by name, a tree's name compared as if it ended in "/".
    const key = (entry: TreeEntry) => Buffer.from(entry.mode === "40000" ? `${entry.name}/` : entry.name);
    const sorted = [...object.entries].sort((a, b) => Buffer.compare(key(a), key(b)));
    return Buffer.concat(
      sorted.map((entry) =>
        Buffer.concat([Buffer.from(`${entry.mode} ${entry.name}\0`), Buffer.from(entry.sha, "hex")]),
      ),
    );
  }
  const { name, email, date } = object.author;
  const signature = `${name} <${email}> ${Math.floor(Date.parse(date) / 1000)} +0000`;
  return Buffer.from(
    [
      `tree ${object.tree}`,
      ...object.parents.map((parent) => `parent ${parent}`),
      `author ${signature}`,
      `committer ${signature}`,
      "",
      object.message,
    ].join("\n"),
  );
}

function parseTree(raw: Buffer): TreeEntry[] {
  const entries: TreeEntry[] = [];
  let at = 0;
  while (at < raw.length) {
    const space = raw.indexOf(0x20, at);
    const nul = raw.indexOf(0, space);
    entries.push({
      mode: raw.subarray(at, space).toString(),
      name: raw.subarray(space + 1, nul).toString(),
      sha: raw.subarray(nul + 1, nul + 21).toString("hex"),
    });
    at = nul + 21;
  }
  return entries;
}

function parseCommit(text: string): Extract<GitObject, { type: "commit" }> {
  const split = text.indexOf("\n\n");
  const headers = text.slice(0, split).split("\n");
  const field = (name: string) =>
    headers.filter((line) => line.startsWith(`${name} `)).map((line) => line.slice(name.length + 1));
  const author = /^(.*) <(.*)> (\d+)/.exec(field("author")[0] ?? "") ?? ["", "", "", "0"];
  return {
    type: "commit",
    tree: field("tree")[0]!,
    parents: field("parent"),
    message: text.slice(split + 2),
    author: { name: author[1]!, email: author[2]!, date: new Date(Number(author[3]) * 1000).toISOString() },
  };
}
