import { access, cp, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import type { GitHubService } from "../../../../gen/hookmesh/github/v1/github_pb.js";
import type { WorkspaceSettings } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { type TaskRepository, ToolCallEventSchema } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { WorkspaceConfig } from "../config.js";
import type { AgentEvent } from "../runners/runner.js";
import { GitCommandError, gitEnv, runGit } from "./checkout-git.js";
import { directoryBytes, MirrorCache } from "./checkout-mirrors.js";
import type { Workspace } from "./workspace.js";

/** The checkout could not be made; `retryable` says whether another attempt may do better. */
export class WorkspaceError extends Error {
  override name = "WorkspaceError";
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/**
 * A checkout made for one run: the workspace, what the sandbox must show read-only, and its
 * release. The workspace's `dir` is the run's directory: a git repository that borrows the
 * mirror's objects (`.git/objects/info/alternates` → `objectStore`), HEAD detached at `baseSha`,
 * the working tree clean; `origin` is `{GITHUB_GIT_URL}/{owner}/{repo}.git` with no credential
 * (nothing in `.git` holds a token); when `baseRef` names a branch, `refs/remotes/origin/{baseRef}`
 * is `baseSha`; `/.home/` (the agent's HOME) is in `.git/info/exclude`; no git identity is set.
 * `objectStore` (the mirror's `objects`) is shown read-only in the sandbox, so that the agent's
 * git works: it can read, never write it. It stays (and is not evicted) until `release`.
 */
export interface Checkout {
  workspace: Workspace;
  /** The mirror's object store, which the clone borrows from: visible read-only in the sandbox. */
  sandboxPaths: string[];
  /** Lets the mirror be evicted again; called once the run's directory is gone. */
  release(): void;
}

export interface CheckoutRequest {
  repository: TaskRepository;
  settings: WorkspaceSettings | undefined;
  /** The run's directory: empty, made by the run. */
  dir: string;
  signal: AbortSignal;
  onEvent(event: AgentEvent): void;
}

export interface CheckoutsDeps {
  github: Pick<Client<typeof GitHubService>, "createCloneToken" | "getPullRequest">;
  config: WorkspaceConfig;
  /** The worker's PATH, where git is found. */
  path: string;
  logger: Logger;
  now?: () => number;
}

/** Codes of the github service that another attempt will meet again. */
const FINAL_CODES = [Code.NotFound, Code.PermissionDenied, Code.FailedPrecondition, Code.InvalidArgument];
/** What git (through GitHub or the test server) says when a repository is gone or the token may not read it. */
const REFUSED =
  /repository not found|not found|returned error: 40[134]|authentication failed|could not read username|couldn't find remote ref/i;
const COMMIT_SHA = /^[0-9a-f]{40}$/;
const GITHUB_NAME = /^(?!\.\.?$)[A-Za-z0-9_.-]{1,100}$/;

/**
 * Makes a run's directory a checkout of its task's repository, outside the sandbox: a read-only
 * token for that one repository from the github service (CreateCloneToken), a fetch into the
 * worker's bare mirror of it (cloned once, fetched after; one fetch per mirror at a time), the
 * size cap, then a clone of the mirror that borrows its objects and checks out the commit.
 * Timeline events say how long each step took and whether the mirror was a cache hit.
 */
export class Checkouts {
  readonly mirrors: MirrorCache;
  private readonly now: () => number;

  constructor(private readonly deps: CheckoutsDeps) {
    this.mirrors = new MirrorCache({
      root: deps.config.cacheDir,
      maxBytes: deps.config.maxCacheBytes,
      logger: deps.logger,
    });
    this.now = deps.now ?? Date.now;
  }

  async checkout(request: CheckoutRequest): Promise<Checkout> {
    const { repository, settings, signal } = request;
    const { owner, repo, installationId } = repository;
    const name = `${owner}/${repo}`;
    // Names become paths of the mirror cache: GitHub's names only, whatever the task says.
    if (!GITHUB_NAME.test(owner) || !GITHUB_NAME.test(repo)) {
      throw new WorkspaceError(`"${name.slice(0, 200)}" is not a GitHub repository name`, false);
    }
    const token = await this.cloneToken(repository, signal);
    const pull = repository.pullRequestNumber > 0n ? await this.pullRequest(repository, signal) : undefined;
    const remote = `${this.deps.config.gitUrl}/${owner}/${repo}.git`;
    const auth = gitEnv(this.deps.path, { gitUrl: this.deps.config.gitUrl, token, lfs: settings?.lfs ?? false });
    const git = (args: string[], env = auth) =>
      runGit(args, { env, timeoutMs: this.deps.config.cloneTimeoutMs, signal }).catch((err: unknown) => {
        throw classify(err, name);
      });

    const mirror = this.mirrors.path(owner, repo);
    const fetched = await this.mirrors.exclusive(mirror, async () => {
      const started = this.now();
      const cacheHit = await exists(join(mirror, "HEAD"));
      if (!cacheHit) {
        await mkdir(mirror, { recursive: true });
        await git(["init", "-q", "--bare", mirror]);
        // Never repacked behind a run's back: runs' clones borrow these objects.
        await git(["-C", mirror, "config", "gc.auto", "0"]);
      }
      let source: { src: string; dst: string; baseRef: string };
      let sha: string;
      let bytes: number;
      try {
        source = pull
          ? { src: `refs/pull/${pull.number}/head`, dst: `refs/pull/${pull.number}/head`, baseRef: pull.headRef }
          : await this.source(repository.ref, remote, git);
        const refspec = `+${source.src}:${source.dst}`;
        await git(["-C", mirror, "fetch", "-q", "--no-tags", "--no-write-fetch-head", remote, refspec]);
        sha = (await git(["-C", mirror, "rev-parse", "--verify", `${source.dst}^{commit}`])).trim();
        bytes = await directoryBytes(mirror);
      } catch (err) {
        // A mirror this checkout made and could not fill is not kept.
        if (!cacheHit) await rm(mirror, { recursive: true, force: true });
        throw err;
      }
      if (bytes > this.deps.config.maxRepoBytes) {
        await rm(mirror, { recursive: true, force: true });
        throw new WorkspaceError(
          `${name} is ${bytes} bytes, over AGENT_REPO_MAX_BYTES (${this.deps.config.maxRepoBytes})`,
          false,
        );
      }
      const release = await this.mirrors.hold(mirror);
      const ms = this.now() - started;
      request.onEvent(
        gitEvent(
          cacheHit ? "git.fetch" : "git.clone",
          `${name} ${source.src} at ${sha.slice(0, 12)} in ${ms} ms (mirror cache ${cacheHit ? "hit" : "miss"}, ${bytes} bytes)`,
        ),
      );
      this.deps.logger.info({ repository: name, ref: source.src, sha, ms, cacheHit, bytes }, "repository fetched");
      return { sha, baseRef: source.baseRef, release };
    });

    try {
      const started = this.now();
      const local = gitEnv(this.deps.path, { lfs: settings?.lfs ?? false });
      const { dir } = request;
      await git(["init", "-q", dir], local);
      await writeFile(join(dir, ".git", "objects", "info", "alternates"), `${join(mirror, "objects")}\n`);
      await writeFile(join(dir, ".git", "info", "exclude"), "/.home/\n");
      await git(["-C", dir, "remote", "add", "origin", remote], local);
      if (fetched.baseRef !== "" && !COMMIT_SHA.test(fetched.baseRef)) {
        const tracking = fetched.baseRef.replace(/^refs\/heads\//, "");
        if (!tracking.startsWith("refs/")) {
          await git(["-C", dir, "update-ref", `refs/remotes/origin/${tracking}`, fetched.sha], local);
        }
      }
      await git(["-C", dir, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", fetched.sha], local);
      if (settings?.submodules) {
        // The token may follow only to GITHUB_GIT_URL, and no local path or other transport is taken.
        await git(["-C", dir, "-c", "protocol.file.allow=never", "submodule", "update", "-q", "--init", "--recursive"]);
      }
      if (settings?.lfs) await this.lfsPull(dir, git);
      request.onEvent(
        gitEvent("git.checkout", `${fetched.sha.slice(0, 12)} into the run's directory in ${this.now() - started} ms`),
      );
      return {
        workspace: {
          dir,
          repository: { owner, repo, installationId },
          baseRef: fetched.baseRef,
          baseSha: fetched.sha,
          ...(pull && { pullRequest: { number: pull.number, headRef: pull.headRef } }),
          objectStore: join(mirror, "objects"),
        },
        sandboxPaths: [join(mirror, "objects")],
        release: fetched.release,
      };
    } catch (err) {
      fetched.release();
      throw err;
    } finally {
      this.mirrors.evict().catch((err: unknown) => this.deps.logger.warn({ err }, "could not evict mirrors"));
    }
  }

  /** What to fetch for a ref (or the default branch), into which ref of the mirror. */
  private async source(
    ref: string,
    remote: string,
    git: (args: string[]) => Promise<string>,
  ): Promise<{ src: string; dst: string; baseRef: string }> {
    if (ref === "") {
      const listed = await git(["ls-remote", "--symref", remote, "HEAD"]);
      const branch = /^ref: refs\/heads\/(\S+)\s+HEAD$/m.exec(listed)?.[1];
      if (branch === undefined) throw new WorkspaceError(`${remote} has no default branch (empty repository?)`, false);
      return { src: `refs/heads/${branch}`, dst: `refs/heads/${branch}`, baseRef: branch };
    }
    if (COMMIT_SHA.test(ref)) return { src: ref, dst: `refs/hookmesh/commits/${ref}`, baseRef: "" };
    if (ref.startsWith("refs/")) return { src: ref, dst: ref, baseRef: ref.replace(/^refs\/heads\//, "") };
    return { src: ref, dst: `refs/hookmesh/named/${ref}`, baseRef: ref };
  }

  private async cloneToken(repository: TaskRepository, signal: AbortSignal): Promise<string> {
    try {
      const res = await this.deps.github.createCloneToken(
        { repository: { owner: repository.owner, repo: repository.repo, installationId: repository.installationId } },
        { signal },
      );
      return res.token;
    } catch (err) {
      throw fromGitHub(err, `no clone token for ${repository.owner}/${repository.repo}`);
    }
  }

  private async pullRequest(
    repository: TaskRepository,
    signal: AbortSignal,
  ): Promise<{ number: bigint; headRef: string; baseRef: string }> {
    const number = repository.pullRequestNumber;
    try {
      const res = await this.deps.github.getPullRequest(
        {
          repository: { owner: repository.owner, repo: repository.repo, installationId: repository.installationId },
          number,
        },
        { signal },
      );
      return { number, headRef: res.pullRequest?.headRef ?? "", baseRef: res.pullRequest?.baseRef ?? "" };
    } catch (err) {
      throw fromGitHub(err, `pull request ${repository.owner}/${repository.repo}#${number}`);
    }
  }

  private async lfsPull(
    dir: string,
    git: (args: string[], env?: Record<string, string>) => Promise<string>,
  ): Promise<void> {
    try {
      await git(["lfs", "version"], gitEnv(this.deps.path));
    } catch {
      throw new WorkspaceError("the profile asks for Git LFS (workspace.lfs) and this worker has no git-lfs", false);
    }
    await git(["-C", dir, "lfs", "pull"]);
  }
}

/**
 * Copies a configuration bundle (AGENT_CONFIG_BUNDLES_DIR/{name}: what goes in a HOME, such as
 * `.claude/` and `.claude.json`) into the agent's HOME. The source is only read.
 */
export async function copyConfigBundle(bundlesDir: string | undefined, name: string, home: string): Promise<void> {
  if (bundlesDir === undefined) {
    throw new WorkspaceError(
      `the profile names config bundle "${name}" and AGENT_CONFIG_BUNDLES_DIR is not set`,
      false,
    );
  }
  const source = join(bundlesDir, name);
  if (!(await exists(source))) {
    throw new WorkspaceError(`config bundle "${name}" is not in AGENT_CONFIG_BUNDLES_DIR (${bundlesDir})`, false);
  }
  await cp(source, home, { recursive: true, force: true, verbatimSymlinks: true });
}

function gitEvent(name: string, detail: string): AgentEvent {
  return { case: "toolCall", value: create(ToolCallEventSchema, { name, detail }) };
}

function fromGitHub(err: unknown, what: string): WorkspaceError {
  const error = ConnectError.from(err);
  return new WorkspaceError(`${what}: ${error.rawMessage}`, !FINAL_CODES.includes(error.code));
}

/** A refused or missing repository fails for good; a timeout or a network failure may pass. */
function classify(err: unknown, name: string): unknown {
  if (!(err instanceof GitCommandError)) return err;
  if (err.timedOut) return new WorkspaceError(`${name}: ${err.message} (AGENT_CLONE_TIMEOUT_MS)`, true);
  if (REFUSED.test(err.stderr)) return new WorkspaceError(`${name} is gone or may not be read: ${err.message}`, false);
  return new WorkspaceError(`${name}: ${err.message}`, true);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
