/**
 * Workspace benchmark: how long until a run's directory is a checkout of its repository, for
 * the first task on a repository (the worker's mirror is cloned over HTTP) and for the next
 * (the mirror is fetched, then the run's clone borrows its objects), with the worker's real
 * checkout code, real git, and a local smart-HTTP git server that requires a token.
 *
 * Readiness is the token, the mirror's clone or fetch, and the checkout of the working tree;
 * the last is the same work for both and grows with the tree, so the mirror steps are also
 * reported apart.
 *
 * The repository is made here: FILES files of FILE_BYTES random bytes each over COMMITS
 * commits, and a pull request head. Each round starts with an empty cache (first) and then
 * checks out the same pull request again after one new commit was pushed to it (next).
 *
 *   npx tsx bench/workspace.ts        (results in bench/results/workspace.json)
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createLogger } from "@hookmesh/kit";
import { GitServer, testGit } from "@hookmesh/kit/testing";
import {
  CreateCloneTokenResponseSchema,
  GetPullRequestResponseSchema,
  PullRequestSchema,
} from "../gen/hookmesh/github/v1/github_pb.js";
import { TaskRepositorySchema } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { Checkouts } from "../services/agent/src/workspace/checkout.js";

const FILES = 2_000;
const FILE_BYTES = 4_096;
const COMMITS = 5;
const ROUNDS = 5;

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const logger = createLogger({ service: "bench", level: "warn" });
const root = mkdtempSync(join(tmpdir(), "hookmesh-bench-workspace-"));
const token = `ghs_${randomBytes(18).toString("base64url")}`;
const git = await GitServer.start({ allows: (given) => given === token });

try {
  const commits = Array.from({ length: COMMITS }, (_, c) =>
    Object.fromEntries(
      Array.from({ length: c === 0 ? FILES : FILES / 10 }, (_, i) => [
        `src/${i % 50}/file-${i}.txt`,
        randomBytes(FILE_BYTES / 2).toString("hex"),
      ]),
    ),
  );
  await git.createRepository("bench/repo", commits, { refs: { "refs/pull/1/head": COMMITS - 1 } });
  const pusher = join(root, "pusher");
  const gitIn = (...args: string[]) => testGit(pusher, ...args);
  mkdirSync(pusher);
  gitIn("clone", "-q", git.path("bench/repo"), ".");
  gitIn("checkout", "-q", "refs/remotes/origin/main");

  const github = {
    createCloneToken: async () => create(CreateCloneTokenResponseSchema, { token }),
    getPullRequest: async () =>
      create(GetPullRequestResponseSchema, {
        pullRequest: create(PullRequestSchema, { number: 1n, headRef: "feature", baseRef: "main" }),
      }),
  };
  const repository = create(TaskRepositorySchema, {
    owner: "bench",
    repo: "repo",
    pullRequestNumber: 1n,
    installationId: 1n,
  });

  const first: number[] = [];
  const next: number[] = [];
  let mirrorBytes = 0;
  const steps: Record<string, number[]> = { "git.clone": [], "git.fetch": [], "git.checkout": [] };
  for (let round = 0; round < ROUNDS; round++) {
    const cacheDir = join(root, `cache-${round}`);
    const checkouts = new Checkouts({
      github,
      config: {
        gitUrl: git.url,
        cacheDir,
        cloneTimeoutMs: 120_000,
        maxRepoBytes: 2 * 1024 ** 3,
        maxCacheBytes: 20 * 1024 ** 3,
        configBundlesDir: undefined,
      },
      path: process.env.PATH ?? "",
      logger,
    });
    const timed = async (into: number[]) => {
      const dir = join(root, `run-${round}-${into.length}-${into === first ? "first" : "next"}`);
      mkdirSync(dir);
      const started = performance.now();
      const checkout = await checkouts.checkout({
        repository,
        settings: undefined,
        dir,
        signal: new AbortController().signal,
        onEvent: (event) => {
          if (event.case !== "toolCall") return;
          const bytes = /, (\d+) bytes\)/.exec(event.value.detail);
          if (bytes) mirrorBytes = Number(bytes[1]);
          const ms = / in (\d+) ms/.exec(event.value.detail);
          if (ms) steps[event.value.name]?.push(Number(ms[1]));
        },
      });
      into.push(performance.now() - started);
      rmSync(dir, { recursive: true, force: true });
      checkout.release();
    };
    await timed(first);
    writeFileSync(join(pusher, `round-${round}.txt`), randomBytes(FILE_BYTES).toString("hex"));
    gitIn("add", "-A");
    gitIn("commit", "-qm", `round ${round}`);
    gitIn("push", "-q", "origin", "HEAD:refs/pull/1/head");
    await timed(next);
  }

  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return Math.round(sorted[Math.floor(sorted.length / 2)]! * 10) / 10;
  };
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version, git: execFileSync("git", ["--version"]).toString().trim() },
    setup: { files: FILES, fileBytes: FILE_BYTES, commits: COMMITS, rounds: ROUNDS, mirrorBytes },
    firstTaskReadyMs: { median: median(first), all: first.map((ms) => Math.round(ms)) },
    nextTaskReadyMs: { median: median(next), all: next.map((ms) => Math.round(ms)) },
    // The parts: the mirror's clone or fetch, then writing the working tree (the same work for both).
    stepsMedianMs: {
      mirrorClone: median(steps["git.clone"]!),
      mirrorFetch: median(steps["git.fetch"]!),
      checkout: median(steps["git.checkout"]!),
    },
    ratios: {
      mirrorCloneOverFetch: Math.round((median(steps["git.clone"]!) / median(steps["git.fetch"]!)) * 10) / 10,
      firstOverNext: Math.round((median(first) / median(next)) * 10) / 10,
    },
  };
  mkdirSync(here("results"), { recursive: true });
  writeFileSync(here("results/workspace.json"), `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
} finally {
  await git.close();
  rmSync(root, { recursive: true, force: true });
}
