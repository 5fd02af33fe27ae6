import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { type AgentEvent, runInWorkspace, type Workspace } from "@hookmesh/agent/testing";
import {
  freePort,
  startService,
  type TestIdentities,
  type TestRedis,
  testGit,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitHubService } from "../gen/hookmesh/github/v1/github_pb.js";
import { RunOutcome } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { FakeGitHub } from "../services/github/test/fake-github.js";

const GITHUB_TOKEN = "ghp_publishTestToken0123456789abcdef";

/** The answer line of the command runner's protocol. */
const answer = (text: string) => `printf '%s\\n' '${JSON.stringify({ hookmesh: 1, answer: text })}'`;

/**
 * Publishing, across the worker and the github service: a command agent edits a file and runs
 * a command (git) in a checkout, sandboxed; the worker commits the changes outside the sandbox
 * and sends them to the real github service (a process, under mTLS, as the agent identity),
 * which makes the branch and the pull request on a GitHub-like server through the Git Data API.
 */
describe("a run's changes become a pull request", () => {
  let identities: TestIdentities;
  let db: TestRedis;
  let fake: FakeGitHub;
  let service: ChildProcess;
  let github: Client<typeof GitHubService>;
  let dir: string;
  let baseSha: string;
  let checkouts = 0;

  beforeAll(async () => {
    identities = await testIdentities();
    db = await testRedis("publish-changes");
    dir = mkdtempSync(join(tmpdir(), "hookmesh-publish-e2e-"));
    const seed = join(dir, "seed");
    mkdirSync(join(seed, "src"), { recursive: true });
    testGit(dir, "init", "-q", "-b", "main", seed);
    writeFileSync(join(seed, "src", "widget.ts"), "export const size = 1;\n");
    writeFileSync(join(seed, "obsolete.txt"), "remove me\n");
    writeFileSync(join(seed, "README.md"), "# widgets\n");
    testGit(seed, "add", "-A");
    testGit(seed, "commit", "-q", "-m", "initial");
    testGit(dir, "clone", "-q", "--bare", seed, join(dir, "mirror.git"));
    baseSha = testGit(seed, "rev-parse", "HEAD").trim();

    fake = await FakeGitHub.start({ tokens: [GITHUB_TOKEN] });
    fake.importRepository("acme", "widgets", join(dir, "mirror.git"));
    const port = await freePort();
    service = startService("@hookmesh/github", {
      ...identities.env,
      GITHUB_PORT: String(port),
      GITHUB_HOST: "127.0.0.1",
      GITHUB_API_URL: fake.url,
      GITHUB_TOKEN,
      GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      LOG_LEVEL: "warn",
    });
    github = identities.clients("agent").client(GitHubService, `https://127.0.0.1:${port}`, "github");
    await serving(github);
  });

  afterAll(async () => {
    service?.kill("SIGTERM");
    if (service && service.exitCode === null) await once(service, "exit");
    await fake?.close();
    await db?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh checkout of the mirror at the base, as the checkout side makes one per run. */
  function checkout(): Workspace {
    const path = join(dir, `checkout-${++checkouts}`);
    testGit(dir, "clone", "-q", join(dir, "mirror.git"), path);
    return {
      dir: path,
      repository: { owner: "acme", repo: "widgets", installationId: 0n },
      baseRef: "main",
      baseSha,
      objectStore: join(dir, "mirror.git", "objects"),
    };
  }

  /** The tree git makes of the base with an edit applied, in a clone of the test's own. */
  function expectedTree(size: number): string {
    const path = join(dir, `expected-${size}`);
    testGit(dir, "clone", "-q", join(dir, "mirror.git"), path);
    writeFileSync(join(path, "src", "widget.ts"), `export const size = ${size};\n`);
    testGit(path, "rm", "-q", "obsolete.txt");
    testGit(path, "add", "-A");
    return testGit(path, "write-tree").trim();
  }

  const agent = (size: number) =>
    `sed -i 's/size = 1/size = ${size}/' src/widget.ts && git rm -q obsolete.txt && ${answer(`Make widgets size ${size}\n\nDone.`)}`;

  const calls = (events: AgentEvent[]) =>
    events.flatMap((event) => (event.case === "toolCall" ? [`${event.value.name}: ${event.value.detail}`] : []));

  it("one branch and one pull request whose diff is exactly the agent's; a retried task updates them", async () => {
    const workdirRoot = join(dir, "runs");
    const first = await runInWorkspace({
      taskId: "t-retry",
      command: agent(2),
      workspace: checkout(),
      github,
      workdirRoot,
    });

    expect(first.report.result.error).toBe("");
    expect(first.report.result.outcome).toBe(RunOutcome.SUCCEEDED);
    const publication = first.report.publication!;
    expect(publication).toMatchObject({ branch: "hookmesh/t-retry", pullRequest: { number: 1n, created: true } });
    expect(publication.changed).toEqual(
      expect.arrayContaining([
        { status: "modified", path: "src/widget.ts" },
        { status: "deleted", path: "obsolete.txt" },
      ]),
    );
    const head = fake.branch("acme", "widgets", "hookmesh/t-retry")!;
    const commit = fake.git.get(head, "commit")!;
    expect(commit.parents).toEqual([baseSha]);
    expect(commit.tree).toBe(expectedTree(2));
    expect(commit.author).toMatchObject({ name: "hookmesh[bot]" });
    expect(commit.message).toMatch(/^Make widgets size 2\n/);
    const [pull] = fake.pullsOf("acme", "widgets");
    expect(pull).toMatchObject({
      title: "Make widgets size 2",
      head: { ref: "hookmesh/t-retry" },
      base: { ref: "main" },
    });
    expect(calls(first.events).join("\n")).toMatch(
      /git\.commit: [0-9a-f]{12} "Make widgets size 2": 2 file\(s\) in \d+ ms/,
    );
    expect(calls(first.events).join("\n")).toMatch(/github\.PublishChanges: pull request #1 .* \(opened\)/);

    // The worker died after publishing; the task runs again, in a new checkout.
    const retry = await runInWorkspace({
      taskId: "t-retry",
      command: agent(3),
      workspace: checkout(),
      github,
      workdirRoot,
    });
    expect(retry.report.publication).toMatchObject({ pullRequest: { number: 1n, created: false } });
    const updated = fake.branch("acme", "widgets", "hookmesh/t-retry")!;
    expect(updated).not.toBe(head);
    expect(fake.git.get(updated, "commit")!.tree).toBe(expectedTree(3));
    expect(fake.pullsOf("acme", "widgets")).toHaveLength(1);
  });

  it("no changes: no commit, no branch, no pull request", async () => {
    const before = fake.pullsOf("acme", "widgets").length;
    const { report, events } = await runInWorkspace({
      taskId: "t-nothing",
      command: `cat README.md && ${answer("Nothing to change")}`,
      workspace: checkout(),
      github,
      workdirRoot: join(dir, "runs"),
    });
    expect(report.result.outcome).toBe(RunOutcome.SUCCEEDED);
    expect(report.publication).toBeUndefined();
    expect(fake.branch("acme", "widgets", "hookmesh/t-nothing")).toBeUndefined();
    expect(fake.pullsOf("acme", "widgets")).toHaveLength(before);
    expect(calls(events)).toEqual([expect.stringMatching(/^git\.commit: no changes/)]);
  });
});

/** Until the service answers (NotFound for a pull request the fake does not have). */
async function serving(github: Client<typeof GitHubService>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await github.getPullRequest({ repository: { owner: "acme", repo: "widgets" }, number: 999n });
      return;
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Unavailable || attempt > 100) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
