import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GitHubService, type PublishChangesRequest, PublishTarget } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { PullRequestPublishing } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { RunOutcome } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { AgentRun, systemClock } from "../src/agent-run.js";
import { answerText } from "../src/replies/messages.js";
import { createRunners } from "../src/runners/index.js";
import { branchFor, commitSubject, Publisher } from "../src/workspace/publish.js";
import type { Workspace } from "../src/workspace/workspace.js";
import { prepareCheckout } from "./git-checkout.js";
import { eventLog, profile, scratchDir, settings } from "./helpers.js";

describe("publishing a run's changes", () => {
  let root: string;
  let workspace: Workspace;
  let received: PublishChangesRequest[];
  beforeEach(async () => {
    root = await scratchDir("publish");
    workspace = prepareCheckout(root);
    received = [];
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** A github service that answers PublishChanges as `answer` says. */
  function publisher(answer: (req: PublishChangesRequest) => object) {
    const transport = createRouterTransport((router) =>
      router.service(GitHubService, {
        publishChanges: (req) => {
          received.push(req);
          return answer(req);
        },
      }),
    );
    return new Publisher({
      github: createClient(GitHubService, transport),
      settings: { author: { name: "hookmesh[bot]", email: "bot@example.com" }, scratchRoot: root },
      logger: memoryLogger("publish-test").logger,
    });
  }

  function run(command: string, publish: Publisher, runProfile = profile()) {
    const log = eventLog();
    const agent = new AgentRun({
      taskId: "task-7",
      prompt: "fix it",
      profile: runProfile,
      runnerName: "command",
      runner: createRunners(settings({ agentCommand: command })).get("command")!,
      defaultMaxRunTimeMs: 60_000,
      workdirRoot: join(root, "runs"),
      workerEnv: { PATH: process.env.PATH },
      clock: systemClock,
      logger: memoryLogger("publish-test").logger,
      onEvent: log.onEvent,
      workspace,
      publish: { publisher: publish, link: "https://hookmesh.example/tasks/task-7" },
    });
    return { report: agent.run(), log };
  }

  const edit = `sed -i 's/size = 1/size = 2/' src/widget.ts && printf '%s\\n' '{"hookmesh":1,"answer":"Bigger widgets\\n\\nDetails."}'`;

  it("sends the commit's files on the workspace's base, to hookmesh's branch for the task, with the summary as title", async () => {
    const publish = publisher((req) => ({
      branch: req.branch,
      commitSha: "c".repeat(40),
      pullRequest: { number: 5n, htmlUrl: "https://github.example/acme/widgets/pull/5" },
      created: true,
    }));
    const { report } = run(edit, publish);
    const done = await report;
    expect(done.result.outcome).toBe(RunOutcome.SUCCEEDED);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      repository: { owner: "acme", repo: "widgets" },
      baseSha: workspace.baseSha,
      branch: "hookmesh/task-7",
      target: PublishTarget.NEW_BRANCH,
      pullRequestBase: "main",
      title: "Bigger widgets",
      author: { name: "hookmesh[bot]", email: "bot@example.com" },
    });
    expect(
      received[0]!.files.map((f) => [f.path, f.mode, Buffer.from(f.change.value as Uint8Array).toString()]),
    ).toEqual([["src/widget.ts", "100644", "export const size = 2;\n"]]);
    expect(done.publication).toMatchObject({ pullRequest: { number: 5n, created: true } });

    const text = answerText(done.result, "https://hookmesh.example/tasks/task-7", 1000, done.publication);
    expect(text).toContain("🔀 Pull request #5: https://github.example/acme/widgets/pull/5");
    expect(text).toContain("- `src/widget.ts` (modified)");
  });

  it("on a pull request, follows up against its branch, or commits on it when the profile says so", async () => {
    workspace = { ...workspace, pullRequest: { number: 12n, headRef: "fix-size" } };
    const publish = publisher((req) => ({ branch: req.branch, commitSha: "c".repeat(40) }));
    await run(edit, publish).report;
    await run(edit, publish, profile({ pullRequestPublishing: PullRequestPublishing.SAME_BRANCH })).report;
    expect(received.map((r) => [r.target, r.branch, r.pullRequestBase])).toEqual([
      [PublishTarget.NEW_BRANCH, "hookmesh/task-7", "fix-size"],
      [PublishTarget.SAME_BRANCH, "fix-size", "fix-size"],
    ]);
  });

  it("shows a dry run's requests and the diff in the timeline", async () => {
    const publish = publisher((req) => ({
      branch: req.branch,
      dryRun: true,
      requests: [{ method: "POST", url: "https://api.github.com/repos/acme/widgets/git/blobs", body: "{}" }],
    }));
    const { report, log } = run(edit, publish);
    const done = await report;
    const calls = log.events.flatMap((e) => (e.case === "toolCall" ? [e.value] : []));
    expect(calls.map((c) => c.name)).toEqual(["git.commit", "github.PublishChanges"]);
    expect(calls[1]!.detail).toMatch(
      /^dry run: 1 requests not sent \(\d+ ms\)\nPOST https:\/\/api\.github\.com\/repos\/acme\/widgets\/git\/blobs \{\}/,
    );
    expect(log.events.some((e) => e.case === "output" && e.value.text.includes("-export const size = 1;"))).toBe(true);
    expect(answerText(done.result, "l", 0, done.publication)).toContain("Dry run: the changes were not published");
  });

  it("fails the run when publishing fails: retryable while the service is unreachable, not for a refusal", async () => {
    const unreachable = await run(
      edit,
      publisher(() => {
        throw new ConnectError("down", Code.Unavailable);
      }),
    ).report;
    expect(unreachable.result.outcome).toBe(RunOutcome.AGENT_ERROR);
    expect(unreachable.result.error).toBe("could not publish the changes: down");
    expect(unreachable.retryable).toBe(true);

    const refused = await run(
      `echo more >> src/widget.ts`,
      publisher(() => {
        throw new ConnectError("branch fix moved", Code.FailedPrecondition);
      }),
    ).report;
    expect(refused.result.outcome).toBe(RunOutcome.AGENT_ERROR);
    expect(refused.retryable).toBe(false);
  });

  it("publishes nothing when nothing changed; the agent's HOME is not a change", async () => {
    const publish = publisher(() => ({}));
    const done = await run(`echo x > "$HOME/note" && echo done`, publish).report;
    expect(done.result.outcome).toBe(RunOutcome.SUCCEEDED);
    expect(done.publication).toBeUndefined();
    expect(received).toHaveLength(0);
  });

  it("takes the first line of the answer as the subject, and the task id as the branch", () => {
    expect(commitSubject("\n  ## Fixed the flaky test  \nmore", "t")).toBe("Fixed the flaky test");
    expect(commitSubject("   ", "t-1")).toBe("hookmesh: changes for task t-1");
    expect(commitSubject("x".repeat(100), "t")).toHaveLength(72);
    expect(branchFor("01J/..weird id")).toBe("hookmesh/01J-weird-id");
  });
});
