import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { GitServer, memoryLogger, testGit } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CreateCloneTokenResponseSchema,
  GetPullRequestResponseSchema,
  PullRequestSchema,
} from "../../../gen/hookmesh/github/v1/github_pb.js";
import type { AgentProfile } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import {
  OutputStream,
  RunOutcome,
  type TaskRepository,
  TaskRepositorySchema,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { AgentRun, systemClock } from "../src/agent-run.js";
import type { WorkspaceConfig } from "../src/config.js";
import { createRunners } from "../src/runners/index.js";
import { Checkouts, type CheckoutsDeps } from "../src/workspace/checkout.js";
import { eventLog, fixture, profile, scratchDir, settings } from "./helpers.js";

/** Stands in for the github service: mints a token per call that the git server takes for that one repository. */
class CloneTokens {
  readonly minted: { token: string; repository: string; installationId: bigint }[] = [];
  forbidden = new Set<string>();

  allows = (token: string, repository: string) =>
    this.minted.some((m) => m.token === token && m.repository === repository);

  readonly client: CheckoutsDeps["github"] = {
    createCloneToken: async ({ repository }) => {
      const name = `${repository!.owner}/${repository!.repo}`;
      if (this.forbidden.has(name)) {
        throw new ConnectError(`github: ${name} is not a repository of installation 42`, Code.PermissionDenied);
      }
      const token = `ghs_${randomBytes(18).toString("base64url")}`;
      this.minted.push({ token, repository: name, installationId: repository!.installationId ?? 0n });
      return create(CreateCloneTokenResponseSchema, { token, cloneUrl: "not used" });
    },
    getPullRequest: async ({ number }) =>
      create(GetPullRequestResponseSchema, {
        pullRequest: create(PullRequestSchema, { number, headRef: "feature", baseRef: "main" }),
      }),
  };
}

describe("Workspaces: checkouts made outside the sandbox", () => {
  let root: string;
  let git: GitServer;
  let tokens: CloneTokens;
  let shas: string[];

  beforeEach(async () => {
    root = await scratchDir("checkout");
    tokens = new CloneTokens();
    git = await GitServer.start({ allows: tokens.allows });
    shas = await git.createRepository(
      "acme/widgets",
      [{ "README.md": "widgets on main\n" }, { "README.md": "widgets on the pull request\n", "src/a.txt": "a\n" }],
      { refs: { "refs/heads/main": 0, "refs/pull/7/head": 1 } },
    );
  });
  afterEach(async () => {
    await git.close();
    await rm(root, { recursive: true, force: true });
  });

  function workspaceConfig(overrides: Partial<WorkspaceConfig> = {}): WorkspaceConfig {
    return {
      gitUrl: git.url,
      cacheDir: join(root, "repos"),
      cloneTimeoutMs: 30_000,
      maxRepoBytes: 50 * 1024 * 1024,
      maxCacheBytes: 500 * 1024 * 1024,
      configBundlesDir: undefined,
      ...overrides,
    };
  }

  function checkouts(overrides: Partial<WorkspaceConfig> = {}): Checkouts {
    return new Checkouts({
      github: tokens.client,
      config: workspaceConfig(overrides),
      path: process.env.PATH ?? "",
      logger: memoryLogger("checkout-test").logger,
    });
  }

  function repository(
    init: { ref?: string; repo?: string; owner?: string; pullRequestNumber?: bigint } = {},
  ): TaskRepository {
    return create(TaskRepositorySchema, { owner: "acme", repo: "widgets", installationId: 42n, ...init });
  }

  async function runAgent(
    command: string,
    options: {
      checkouts: Checkouts;
      repository?: TaskRepository;
      profile?: AgentProfile;
      configBundlesDir?: string;
      /** Called with the run once it started, e.g. to stop it. */
      started?: (run: AgentRun) => void;
    },
  ) {
    const log = eventLog();
    const run = new AgentRun({
      taskId: "task-1",
      prompt: "read the README",
      profile: options.profile ?? profile({ workspace: { enabled: true } }),
      runnerName: "command",
      runner: createRunners(settings({ agentCommand: command })).get("command")!,
      defaultMaxRunTimeMs: 60_000,
      workdirRoot: join(root, "runs"),
      workerEnv: { PATH: process.env.PATH },
      clock: systemClock,
      logger: memoryLogger("checkout-test").logger,
      onEvent: log.onEvent,
      checkouts: options.checkouts,
      ...(options.repository && { repository: options.repository }),
      ...(options.configBundlesDir && { configBundlesDir: options.configBundlesDir }),
    });
    const running = run.run();
    options.started?.(run);
    const report = await running;
    return { report, log, stdout: log.text(OutputStream.STDOUT).join("\n") };
  }

  const gitEvents = (log: ReturnType<typeof eventLog>) =>
    log.toolCalls().filter((call) => call.name.startsWith("git."));

  it("checks out a pull request's head with a token for that repository; the agent reads it, sandboxed, with git", async () => {
    const { report, log, stdout } = await runAgent(
      "cat README.md && git rev-parse HEAD && git remote get-url origin && git status --porcelain | wc -l",
      { checkouts: checkouts(), repository: repository({ pullRequestNumber: 7n }) },
    );

    expect(report.result.error).toBe("");
    expect(stdout.split("\n")).toEqual(["widgets on the pull request", shas[1], `${git.url}/acme/widgets.git`, "0"]);
    expect(tokens.minted).toEqual([{ token: expect.any(String), repository: "acme/widgets", installationId: 42n }]);
    // Every request of the checkout carried the minted token, and the fetch was of the PR's head.
    expect(git.requests.every((r) => r.token === tokens.minted[0]!.token && r.status === 200)).toBe(true);
    expect(gitEvents(log)).toEqual([
      {
        name: "git.clone",
        detail: expect.stringMatching(
          /^acme\/widgets refs\/pull\/7\/head at \w{12} in \d+ ms \(mirror cache miss, \d+ bytes\)$/,
        ),
      },
      { name: "git.checkout", detail: expect.stringMatching(/ into the run's directory in \d+ ms$/) },
    ]);
    // The run's directory is gone; its mirror stays.
    expect(await readdir(join(root, "runs"))).toEqual([]);
    expect(existsSync(join(root, "repos", "acme", "widgets.git", "HEAD"))).toBe(true);
  });

  it("checks out the default branch, or the ref the profile names", async () => {
    const cache = checkouts();
    const main = await runAgent("cat README.md && git rev-parse HEAD && git branch -r", {
      checkouts: cache,
      repository: repository(),
    });
    expect(main.stdout.split("\n")).toEqual(["widgets on main", shas[0], "  origin/main"]);

    const byRef = await runAgent("cat README.md", { checkouts: cache, repository: repository({ ref: shas[1]! }) });
    expect(byRef.stdout).toBe("widgets on the pull request");
  });

  it("reuses the mirror: the second task on a repository fetches what it lacks, never clones again", async () => {
    const cache = checkouts();
    const first = await runAgent("cat README.md", {
      checkouts: cache,
      repository: repository({ pullRequestNumber: 7n }),
    });
    expect(first.stdout).toBe("widgets on the pull request");

    // The pull request moves on.
    const work = join(root, "pusher");
    await mkdir(work);
    const gitIn = (...args: string[]) => testGit(work, ...args);
    gitIn("clone", "-q", git.path("acme/widgets"), ".");
    gitIn("checkout", "-q", shas[1]!);
    await writeFile(join(work, "README.md"), "widgets after a push\n");
    gitIn("commit", "-qam", "push");
    gitIn("push", "-q", "origin", "HEAD:refs/pull/7/head");

    const second = await runAgent("cat README.md", {
      checkouts: cache,
      repository: repository({ pullRequestNumber: 7n }),
    });
    expect(second.stdout).toBe("widgets after a push");
    expect(gitEvents(second.log)[0]).toMatchObject({
      name: "git.fetch",
      detail: expect.stringContaining("mirror cache hit"),
    });
    const fetches = git.fetches("acme/widgets");
    expect(fetches).toHaveLength(2);
    expect(fetches[0]!.haves).toBe(0); // the clone: nothing to offer
    expect(fetches[1]!.haves).toBeGreaterThan(0); // a fetch: the mirror offered what it had
    expect(tokens.minted).toHaveLength(2); // a new token per checkout
  });

  it("keeps the token out of the sandbox, the workspace's .git and the mirror (the escape agent searches them all)", async () => {
    const cache = checkouts();
    const { stdout, log } = await runAgent(
      `node ${fixture("escape-agent.mjs")} '${JSON.stringify({ search: "ghs_[A-Za-z0-9_-]{20,}", read: [".git/config"] })}'`,
      { checkouts: cache, repository: repository({ pullRequestNumber: 7n }) },
    );
    const token = tokens.minted[0]!.token;
    expect(stdout).toMatch(/^searched \d+ files$/m);
    expect(Number(/^searched (\d+) files$/m.exec(stdout)![1])).toBeGreaterThan(10);
    expect(stdout).toContain("read .git/config: ok");
    expect(stdout).not.toMatch(/^found /m);
    expect(stdout).not.toContain(token);
    expect(JSON.stringify(log.events, (_, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(token);
    for (const file of await filesUnder(join(root, "repos"))) {
      expect(await readFile(file, "latin1"), file).not.toContain(token);
    }
  });

  it("fails for good on a repository the installation does not have, or that the git host refuses", async () => {
    tokens.forbidden.add("acme/secret");
    const refused = await runAgent("true", {
      checkouts: checkouts(),
      repository: repository({ owner: "acme", repo: "secret" }),
    });
    expect(refused.report).toMatchObject({
      retryable: false,
      result: { error: "no clone token for acme/secret: github: acme/secret is not a repository of installation 42" },
    });

    // A token the github service gave, for a repository the git host does not have.
    const gone = await runAgent("true", { checkouts: checkouts(), repository: repository({ repo: "gone" }) });
    expect(gone.report.retryable).toBe(false);
    expect(gone.report.result.error).toMatch(/^acme\/gone is gone or may not be read: git ls-remote: /);
    expect(existsSync(join(root, "repos", "acme", "gone.git"))).toBe(false);
  });

  it("refuses names that are not GitHub's, and LFS on a worker without git-lfs, for good", async () => {
    const dotted = await runAgent("true", { checkouts: checkouts(), repository: repository({ owner: ".." }) });
    expect(dotted.report).toMatchObject({
      retryable: false,
      result: { error: '"../widgets" is not a GitHub repository name' },
    });
    expect(tokens.minted).toEqual([]);

    const lfs = await runAgent("true", {
      checkouts: checkouts(),
      repository: repository(),
      profile: profile({ workspace: { enabled: true, lfs: true } }),
    });
    expect(lfs.report).toMatchObject({
      retryable: false,
      result: { error: "the profile asks for Git LFS (workspace.lfs) and this worker has no git-lfs" },
    });
  });

  it("refuses a repository over AGENT_REPO_MAX_BYTES, for good, and keeps no mirror of it", async () => {
    const { report } = await runAgent("true", {
      checkouts: checkouts({ maxRepoBytes: 2_000 }),
      repository: repository(),
    });
    expect(report.retryable).toBe(false);
    expect(report.result.error).toMatch(/^acme\/widgets is \d+ bytes, over AGENT_REPO_MAX_BYTES \(2000\)$/);
    expect(existsSync(join(root, "repos", "acme", "widgets.git"))).toBe(false);
  });

  it("retries a fetch that times out (AGENT_CLONE_TIMEOUT_MS)", async () => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const { report } = await runAgent("true", {
        checkouts: checkouts({ gitUrl: `http://127.0.0.1:${port}`, cloneTimeoutMs: 1_000 }),
        repository: repository(),
      });
      expect(report.retryable).toBe(true);
      expect(report.result.error).toContain("timed out after 1000 ms (AGENT_CLONE_TIMEOUT_MS)");
    } finally {
      silent.close();
    }
  });

  it("ends a checkout cut short by a cancel as CANCELED, not as a failed fetch", async () => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const { report } = await runAgent("true", {
        checkouts: checkouts({ gitUrl: `http://127.0.0.1:${port}` }),
        repository: repository(),
        started: (run) => setTimeout(() => run.stop("cancel"), 300),
      });
      expect(report).toMatchObject({ retryable: false, result: { outcome: RunOutcome.CANCELED, error: "canceled" } });
    } finally {
      silent.close();
    }
  });

  it("evicts the least recently used mirror beyond AGENT_REPO_CACHE_MAX_BYTES, never one in use", async () => {
    await git.createRepository("acme/gadgets", [{ "README.md": "gadgets\n" }]);
    const cache = checkouts({ maxCacheBytes: 1 });
    await runAgent("true", { checkouts: cache, repository: repository() });
    const widgets = join(root, "repos", "acme", "widgets.git");
    // Evicted once the run released it: the next checkout makes room.
    const { stdout } = await runAgent(`test -d ${widgets} && echo kept || echo evicted; cat README.md`, {
      checkouts: cache,
      repository: repository({ repo: "gadgets" }),
    });
    expect(stdout.split("\n")).toEqual(["evicted", "gadgets"]);
    // The mirror the run used was still there while it ran, then stays until another checkout needs room.
    expect(existsSync(join(root, "repos", "acme", "gadgets.git"))).toBe(true);
  });

  it("copies the profile's config bundle into the agent's HOME; a bundle the worker lacks fails for good", async () => {
    const bundles = join(root, "bundles");
    await mkdir(join(bundles, "reviewer", ".claude", "skills"), { recursive: true });
    await writeFile(join(bundles, "reviewer", ".claude", "CLAUDE.md"), "review carefully\n");
    const withBundle = profile({ workspace: { enabled: true, configBundle: "reviewer" } });
    const { stdout } = await runAgent('cat "$HOME/.claude/CLAUDE.md" && git status --porcelain | wc -l', {
      checkouts: checkouts(),
      repository: repository(),
      profile: withBundle,
      configBundlesDir: bundles,
    });
    expect(stdout.split("\n")).toEqual(["review carefully", "0"]);

    const missing = await runAgent("true", {
      checkouts: checkouts(),
      profile: profile({ workspace: { configBundle: "absent" } }),
      configBundlesDir: bundles,
    });
    expect(missing.report).toMatchObject({
      retryable: false,
      result: { error: `config bundle "absent" is not in AGENT_CONFIG_BUNDLES_DIR (${bundles})` },
    });
  });

  it("runs in an empty directory when the task names no repository", async () => {
    const { stdout, log } = await runAgent("ls -A", { checkouts: checkouts() });
    expect(stdout).toBe(".home");
    expect(gitEvents(log)).toEqual([]);
    expect(git.requests).toEqual([]);
  });
});

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}
