import type { ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { type ClientFactory, createLogger } from "@hookmesh/kit";
import {
  freePort,
  GitServer,
  startService,
  type TestIdentities,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkspaceSettingsSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { RouteService } from "../gen/hookmesh/tasks/v1/route_service_pb.js";
import { RunOutcome, type Task, TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { FakeGitHub } from "../services/github/test/fake-github.js";
import { githubHeaders, post } from "./deliveries.js";

const POLL = { timeout: 30_000, interval: 100 };
const INSTALLATION = 4242n;
const APP_ID = "4242";

/**
 * Workspaces, end to end: a signed mention on a pull request enters the gateway, is routed by a
 * rule whose profile enables a workspace, and a real worker process checks out the pull
 * request's head: a read-only token for that one repository from the real github service
 * (GitHub App auth against the GitHub-like server), a fetch from a local git server that takes
 * only that token, and the agent, sandboxed, reading a file of the checkout.
 */
describe("workspaces, end to end", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let github: FakeGitHub;
  let git: GitServer;
  let githubService: ChildProcess;
  let worker: ChildProcess;
  let dir: string;
  let identities: TestIdentities;
  let operator: ClientFactory;
  let headSha: string;
  const logger = createLogger({ service: "test", level: "silent" });

  beforeAll(async () => {
    identities = await testIdentities();
    operator = identities.clients("operator");
    db = await testRedis("workspaces");
    tasks = await startTasks(db, logger, { env: identities.env });
    gateway = await startGateway(db, tasks.url, logger, identities.env);
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
    github = await FakeGitHub.start({ app: { id: APP_ID, publicKey, installations: [INSTALLATION] } });
    github.addPull("octo", "repo", 7, { head: { ref: "feature", sha: "0".repeat(40) } });
    // The git host takes an installation token the github service minted, for the repositories it names.
    git = await GitServer.start({
      allows: (token, repository) => {
        const minted = github.installationTokens.get(token);
        return minted?.repositories?.includes(repository.split("/")[1]!) === true && repository.startsWith("octo/");
      },
    });
    const shas = await git.createRepository(
      "octo/repo",
      [{ "README.md": "on main\n" }, { "README.md": "the pull request's head\n" }],
      { refs: { "refs/heads/main": 0, "refs/heads/feature": 1, "refs/pull/7/head": 1 } },
    );
    headSha = shas[1]!;
    // The same repository behind the REST API, for the publish of the agent's changes.
    github.importRepository("octo", "repo", git.path("octo/repo"));
    const port = await freePort();
    githubService = startService("@hookmesh/github", {
      ...identities.env,
      GITHUB_PORT: String(port),
      GITHUB_HOST: "127.0.0.1",
      GITHUB_API_URL: github.url,
      GITHUB_APP_ID: APP_ID,
      GITHUB_APP_PRIVATE_KEY: pem,
      GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      LOG_LEVEL: "warn",
    });
    const routingRules = operator.client(RouteService, tasks.url, "tasks");
    const { routes } = await routingRules.listRoutes({});
    const rule = routes.find((r) => r.id === "github-mention")!;
    await routingRules.upsertRoute({
      route: { ...rule, profile: { ...rule.profile!, workspace: create(WorkspaceSettingsSchema, { enabled: true }) } },
    });
    dir = mkdtempSync(join(tmpdir(), "hookmesh-workspaces-"));
    worker = startService("@hookmesh/agent", {
      ...identities.env,
      TASKS_URL: tasks.url,
      GITHUB_URL: `https://127.0.0.1:${port}`,
      GITHUB_GIT_URL: git.url,
      AGENT_ID: `worker-${randomUUID().slice(0, 8)}`,
      AGENT_PORT: "0",
      AGENT_HOST: "127.0.0.1",
      AGENT_RUNNER: "command",
      AGENT_COMMAND: `cat README.md; git rev-parse HEAD; case "$HOOKMESH_PROMPT" in *"change the README"*) echo changed >> README.md;; esac`,
      AGENT_CONCURRENCY: "1",
      AGENT_WORKDIR: join(dir, "runs"),
      AGENT_PROGRESS_INTERVAL_MS: "0",
      LOG_LEVEL: "warn",
    });
  }, 60_000);

  afterAll(async () => {
    operator?.close();
    for (const child of [worker, githubService]) {
      child?.kill("SIGTERM");
      if (child && child.exitCode === null) await once(child, "exit");
    }
    await gateway?.close();
    await tasks?.close();
    await github?.close();
    await git?.close();
    await db?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A new comment each time: the gateway takes the same signed body twice as one delivery. */
  async function mentionOnPullRequest(commentId: number, text = "what does the README say?"): Promise<string> {
    const body = JSON.stringify({
      action: "created",
      issue: {
        number: 7,
        title: "Add the feature",
        pull_request: { url: "https://api.github.com/repos/octo/repo/pulls/7" },
      },
      comment: { id: commentId, body: `@hookmesh ${text}`, author_association: "OWNER" },
      repository: { name: "repo", owner: { login: "octo" } },
      installation: { id: Number(INSTALLATION) },
      sender: { id: 1, login: "octocat", type: "User" },
    });
    // post waits for the gateway to forward what it acknowledged: the task is made behind the ack.
    const reply = await post(gateway.base, "github", body, githubHeaders(body));
    expect(reply.status).toBe(202);
    return reply.json.task_id as string;
  }

  async function finished(id: string): Promise<{ task: Task; calls: string[] }> {
    const client = operator.client(TaskService, tasks.url, "tasks");
    await expect.poll(async () => (await client.getTask({ id })).task!.state, POLL).toBe(TaskState.SUCCEEDED);
    const calls: string[] = [];
    for await (const { event } of client.watchTask({ id })) {
      if (event?.kind.case === "toolCall") calls.push(`${event.kind.value.name} ${event.kind.value.detail}`);
    }
    return { task: (await client.getTask({ id })).task!, calls };
  }

  it("checks out the pull request's head with a token for that one repository; the second task fetches, never clones", async () => {
    const first = await finished(await mentionOnPullRequest(101));
    expect(first.task.repository).toMatchObject({
      owner: "octo",
      repo: "repo",
      pullRequestNumber: 7n,
      installationId: INSTALLATION,
    });
    expect(first.task.result!.answer).toBe(`the pull request's head\n${headSha}`);
    expect(first.calls).toContainEqual(
      expect.stringMatching(/^git\.clone octo\/repo refs\/pull\/7\/head at \w{12} in \d+ ms \(mirror cache miss/),
    );
    const [minted] = [...github.installationTokens.entries()].filter(([, t]) => t.repositories?.includes("repo"));
    expect(minted![1]).toMatchObject({ installationId: String(INSTALLATION), permissions: { contents: "read" } });
    expect(git.requests.length).toBeGreaterThan(0);
    expect(git.requests.every((r) => r.status === 200 && github.installationTokens.has(r.token))).toBe(true);

    const second = await finished(await mentionOnPullRequest(102));
    expect(second.task.result!.answer).toBe(`the pull request's head\n${headSha}`);
    expect(second.calls).toContainEqual(expect.stringMatching(/^git\.fetch octo\/repo .* \(mirror cache hit/));
    // One clone, ever: the second task's fetch found everything in the mirror.
    expect(git.fetches("octo/repo")).toHaveLength(1);
    // No token in the timeline.
    for (const token of github.installationTokens.keys()) {
      expect(JSON.stringify([first.calls, second.calls, first.task.result?.answer])).not.toContain(token);
    }
  }, 90_000);

  it("turns the agent's change in the checkout into a follow-up pull request against the pull request's branch", async () => {
    const id = await mentionOnPullRequest(103, "please change the README");
    const { task, calls } = await finished(id);
    const pull = github.pullsOf("octo", "repo").find((p) => (p.head as { ref: string }).ref === `hookmesh/${id}`);
    expect(pull).toMatchObject({ base: { ref: "feature" } });
    const commit = github.git.get(github.branch("octo", "repo", `hookmesh/${id}`)!, "commit")!;
    expect(commit.parents).toEqual([headSha]);
    expect(calls).toContainEqual(expect.stringMatching(/^git\.fetch octo\/repo .* \(mirror cache hit/));
    expect(calls).toContainEqual(expect.stringMatching(/^github\.PublishChanges /));
    expect(task.result!.outcome).toBe(RunOutcome.SUCCEEDED);
    // The answer on the pull request links the new one.
    await expect
      .poll(() => [...github.comments.values()].some((c) => String(c.body).includes(String(pull!.html_url))), POLL)
      .toBe(true);
  }, 90_000);
});
