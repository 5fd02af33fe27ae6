import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Workspace } from "./workspace.js";

const run = promisify(execFile);

/** A file of the commit as the github service takes it: its content after the run, or deleted. */
export interface FileToPublish {
  path: string;
  /** `100644`, `100755` or `120000` (a symbolic link, whose target is the content). */
  mode: string;
  /** Undefined: the file is deleted. */
  content?: Buffer;
}

/** One line of the changes' summary, as replies list it. */
export interface ChangedPath {
  status: "added" | "modified" | "deleted" | "renamed";
  path: string;
  /** For a rename: where it came from. */
  from?: string;
}

export interface CommittedChanges {
  commitSha: string;
  treeSha: string;
  files: FileToPublish[];
  changed: ChangedPath[];
  /** `git diff` of the commit (binary files as such), for the timeline. */
  diff: string;
}

export interface CommitOptions {
  workspace: Workspace;
  author: { name: string; email: string };
  message: string;
  /** Top-level paths of the checkout that are the worker's, not the agent's (the run's HOME). */
  excluded: readonly string[];
  /** Where the commit's private git directory is made: a directory the sandbox never sees. */
  scratchRoot: string;
  /** Most bytes of content the commit may carry (the github service's limit). */
  maxBytes: number;
  signal?: AbortSignal;
}

/** The changes cannot be published as they are (too large, an embedded repository). */
export class UnpublishableChangesError extends Error {
  override name = "UnpublishableChangesError";
}

/**
 * Commits what the agent changed in the workspace against its base commit, and returns the
 * commit's files; undefined when nothing changed.
 *
 * Everything in the checkout, `.git` included, was writable by the agent, so git never reads
 * it as a repository: a planted `.git/config` could run commands through `core.fsmonitor`,
 * `core.sshCommand`, hooks, filter or diff drivers the moment a worker's git opened it. The
 * commit is built in a private git directory made here, outside the sandbox: its index starts
 * at the base commit (read from the worker's object store through `alternates`), `git add -A`
 * takes the checkout as a plain work tree, and the commit is written there. No system or global
 * configuration is read, hooks and fsmonitor are off, and the repository's own `.gitattributes`
 * may name a filter but no command stands behind the name. `safe.directory` never comes into
 * it: the repository git opens is this private one, the worker's own, and the files the
 * sandbox's user made (another uid on some hosts) are only read as a work tree. The commit's files are read back from the private object store: what is sent is
 * exactly what was committed.
 */
export async function commitChanges(options: CommitOptions): Promise<CommittedChanges | undefined> {
  const scratch = await mkdtemp(join(options.scratchRoot, "hookmesh-commit-"));
  try {
    const gitDir = join(scratch, "git");
    const git = privateGit(gitDir, options.workspace.dir, scratch, options);
    await git.init();
    await writeFile(join(gitDir, "objects", "info", "alternates"), `${options.workspace.objectStore}\n`);
    await mkdir(join(gitDir, "info"), { recursive: true });
    const excluded = options.excluded.map((path) => `/${path.replace(/^\/+|\/+$/g, "")}/\n/${path}\n`).join("");
    await writeFile(join(gitDir, "info", "exclude"), excluded);

    const base = options.workspace.baseSha;
    await git(["read-tree", base]);
    await git(["add", "-A", "--", "."]);
    const tree = (await git(["write-tree"])).trim();
    const baseTree = (await git(["rev-parse", `${base}^{tree}`])).trim();
    if (tree === baseTree) return undefined;
    const commitSha = (await git(["commit-tree", tree, "-p", base, "-F", "-"], options.message)).trim();

    const raw = await git(["diff-tree", "-r", "-z", "--raw", "-M", "--no-commit-id", base, commitSha]);
    const { files, changed } = parseRawDiff(raw);
    const gitlink = files.find((file) => file.mode === "160000");
    if (gitlink)
      throw new UnpublishableChangesError(
        `${gitlink.path} is an embedded git repository; hookmesh publishes files only`,
      );
    let bytes = 0;
    for (const file of files) {
      if (file.sha === undefined) continue;
      bytes += Number((await git(["cat-file", "-s", file.sha])).trim());
      if (bytes > options.maxBytes)
        throw new UnpublishableChangesError(
          `the changes hold more than ${options.maxBytes} bytes of content, more than one pull request takes`,
        );
    }
    const published: FileToPublish[] = [];
    for (const file of files) {
      published.push(
        file.sha === undefined
          ? { path: file.path, mode: file.mode }
          : { path: file.path, mode: file.mode, content: await git.bytes(["cat-file", "blob", file.sha]) },
      );
    }
    const diff = await git(["diff-tree", "-p", "-M", "--stat", "--no-commit-id", base, commitSha]);
    return { commitSha, treeSha: tree, files: published, changed, diff };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

interface PrivateGit {
  (args: string[], input?: string): Promise<string>;
  bytes(args: string[]): Promise<Buffer>;
  init(): Promise<void>;
}

/** git on the private directory and the checkout as work tree, reading no configuration but its own. */
function privateGit(gitDir: string, workTree: string, home: string, options: CommitOptions): PrivateGit {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ATTR_NOSYSTEM: "1",
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: options.author.name,
    GIT_AUTHOR_EMAIL: options.author.email,
    GIT_COMMITTER_NAME: options.author.name,
    GIT_COMMITTER_EMAIL: options.author.email,
  };
  const config = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.bare=false",
    "core.fileMode=true",
    "core.symlinks=true",
    "core.autocrlf=false",
    "core.quotePath=false",
  ].flatMap((entry) => ["-c", entry]);
  const repository = ["--git-dir", gitDir, "--work-tree", workTree];
  const call = async (args: string[], input?: string): Promise<string> => {
    const child = run("git", [...config, ...repository, ...args], {
      env,
      maxBuffer: 64 * 1024 * 1024,
      ...(options.signal && { signal: options.signal }),
    });
    if (input !== undefined) child.child.stdin?.end(input);
    else child.child.stdin?.end();
    return (await child).stdout;
  };
  return Object.assign(call, {
    init: async () => {
      await run("git", [...config, "init", "-q", "--bare", gitDir], { env });
    },
    bytes: async (args: string[]) =>
      (
        await run("git", [...config, ...repository, ...args], {
          env,
          encoding: "buffer",
          maxBuffer: 64 * 1024 * 1024,
          ...(options.signal && { signal: options.signal }),
        })
      ).stdout,
  });
}

interface RawChange {
  path: string;
  mode: string;
  /** Undefined for a deletion. */
  sha?: string;
}

/** `git diff-tree -z --raw -M`: `:old new oldsha newsha status\0path\0[newpath\0]` per change. */
function parseRawDiff(raw: string): { files: RawChange[]; changed: ChangedPath[] } {
  const fields = raw.split("\0");
  const files: RawChange[] = [];
  const changed: ChangedPath[] = [];
  for (let i = 0; i < fields.length && fields[i] !== ""; ) {
    const [, newMode, , newSha, status] = fields[i]!.slice(1).split(" ") as [string, string, string, string, string];
    const path = fields[i + 1]!;
    if (status.startsWith("R")) {
      const to = fields[i + 2]!;
      files.push({ path, mode: "100644" }, { path: to, mode: newMode, sha: newSha });
      changed.push({ status: "renamed", path: to, from: path });
      i += 3;
      continue;
    }
    if (status === "D") {
      files.push({ path, mode: "100644" });
      changed.push({ status: "deleted", path });
    } else {
      files.push({ path, mode: newMode, sha: newSha });
      changed.push({ status: status === "A" ? "added" : "modified", path });
    }
    i += 2;
  }
  return { files, changed };
}
