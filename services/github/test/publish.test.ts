import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { callError, testGit } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  FileChangeSchema,
  type PublishChangesRequest,
  PublishChangesRequestSchema,
  PublishTarget,
} from "../../../gen/hookmesh/github/v1/github_pb.js";
import { gitBlobSha } from "../src/publish.js";
import { type Harness, REPO, serve, setup } from "./helpers.js";

const AUTHOR = { name: "hookmesh[bot]", email: "hookmesh[bot]@users.noreply.github.com" };

const file = (path: string, content: string | Buffer, mode = "100644") =>
  create(FileChangeSchema, { path, mode, change: { case: "content", value: Buffer.from(content) } });
const deleted = (path: string) => create(FileChangeSchema, { path, change: { case: "deleted", value: true } });

describe("PublishChanges", () => {
  let h: Harness;
  let dir: string;
  let work: string;
  let baseSha: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "hookmesh-publish-"));
    work = join(dir, "work");
    mkdirSync(join(work, "src"), { recursive: true });
    testGit(dir, "init", "-q", "-b", "main", work);
    writeFileSync(join(work, "README.md"), "# widgets\n");
    writeFileSync(join(work, "src", "widget.ts"), "export const size = 1;\n");
    writeFileSync(join(work, "obsolete.txt"), "remove me\n");
    testGit(work, "add", "-A");
    testGit(work, "commit", "-q", "-m", "initial");
    testGit(work, "branch", "feature");
    testGit(dir, "clone", "-q", "--bare", work, join(dir, "mirror.git"));
    baseSha = testGit(work, "rev-parse", "HEAD").trim();
  });
  afterEach(async () => {
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function live() {
    h = await setup();
    h.fake.importRepository("acme", "widgets", join(dir, "mirror.git"));
    return (await serve(h)).client;
  }

  function request(
    overrides: Partial<Pick<PublishChangesRequest, "baseSha" | "branch" | "target" | "pullRequestBase" | "files">> = {},
  ): PublishChangesRequest {
    return create(PublishChangesRequestSchema, {
      repository: REPO,
      baseSha,
      branch: "hookmesh/t-1",
      target: PublishTarget.NEW_BRANCH,
      pullRequestBase: "main",
      title: "Make widgets bigger",
      body: "The agent's answer",
      commitMessage: "Make widgets bigger\n\nTask: t-1\n",
      author: AUTHOR,
      files: [
        file("src/widget.ts", "export const size = 2;\n"),
        file("bin/run.sh", "#!/bin/sh\necho hi\n", "100755"),
        file("logo.bin", Buffer.from([0, 255, 1, 0])),
        deleted("obsolete.txt"),
      ],
      ...overrides,
    });
  }

  /** The tree git makes of the base with the request's changes applied in a working copy. */
  function expectedTree(): string {
    writeFileSync(join(work, "src", "widget.ts"), "export const size = 2;\n");
    mkdirSync(join(work, "bin"), { recursive: true });
    writeFileSync(join(work, "bin", "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    writeFileSync(join(work, "logo.bin"), Buffer.from([0, 255, 1, 0]));
    rmSync(join(work, "obsolete.txt"));
    testGit(work, "add", "-A");
    return testGit(work, "write-tree").trim();
  }

  it("makes one branch and one pull request whose tree is exactly the base with the changes", async () => {
    const client = await live();
    const res = await client.publishChanges(request());

    expect(res).toMatchObject({ branch: "hookmesh/t-1", created: true, dryRun: false });
    expect(res.pullRequest).toMatchObject({
      number: 1n,
      headRef: "hookmesh/t-1",
      baseRef: "main",
      title: "Make widgets bigger",
    });
    expect(h.fake.branch("acme", "widgets", "hookmesh/t-1")).toBe(res.commitSha);
    const commit = h.fake.git.get(res.commitSha, "commit")!;
    expect(commit.parents).toEqual([baseSha]);
    expect(commit.author).toMatchObject(AUTHOR);
    expect(commit.message).toBe("Make widgets bigger\n\nTask: t-1\n");
    expect(commit.tree).toBe(expectedTree());
    expect(h.fake.pullsOf("acme", "widgets")).toHaveLength(1);
    expect(res.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([
      `GET /repos/acme/widgets/git/commits/${baseSha}`,
      "POST /repos/acme/widgets/git/blobs",
      "POST /repos/acme/widgets/git/blobs",
      "POST /repos/acme/widgets/git/blobs",
      "POST /repos/acme/widgets/git/trees",
      "POST /repos/acme/widgets/git/commits",
      "POST /repos/acme/widgets/git/refs",
      "GET /repos/acme/widgets/pulls",
      "POST /repos/acme/widgets/pulls",
    ]);
  });

  it("a repeat for the task updates its branch and finds its pull request: never a second one", async () => {
    const client = await live();
    const first = await client.publishChanges(request());
    const again = await client.publishChanges(request({ files: [file("src/widget.ts", "export const size = 3;\n")] }));

    expect(again.created).toBe(false);
    expect(again.pullRequest?.number).toBe(first.pullRequest?.number);
    expect(again.commitSha).not.toBe(first.commitSha);
    expect(h.fake.branch("acme", "widgets", "hookmesh/t-1")).toBe(again.commitSha);
    expect(h.fake.git.get(again.commitSha, "commit")!.parents).toEqual([baseSha]);
    expect(h.fake.git.files(again.commitSha).get("src/widget.ts")?.content.toString()).toBe("export const size = 3;\n");
    expect(h.fake.pullsOf("acme", "widgets")).toHaveLength(1);
    const methods = again.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`);
    expect(methods).toContain("PATCH /repos/acme/widgets/git/refs/heads/hookmesh/t-1");
    expect(methods).not.toContain("POST /repos/acme/widgets/pulls");
  });

  it("finds the pull request another attempt opened between its lookup and the open (422 already exists)", async () => {
    const client = await live();
    await client.publishChanges(request());
    h.fake.answerTo("GET /repos/acme/widgets/pulls", { status: 200, body: [] });
    const again = await client.publishChanges(request());
    expect(again).toMatchObject({ created: false, pullRequest: { number: 1n } });
    expect(h.fake.pullsOf("acme", "widgets")).toHaveLength(1);
  });

  it("commits on a pull request's own branch, fast-forward, and a repeat of the same change is done", async () => {
    const client = await live();
    h.fake.addPull("acme", "widgets", 3, { head: { label: "acme:feature", ref: "feature", sha: baseSha } });
    const sameBranch = request({ branch: "feature", target: PublishTarget.SAME_BRANCH, pullRequestBase: "" });
    const res = await client.publishChanges(sameBranch);
    expect(res).toMatchObject({ branch: "feature", created: false });
    expect(res.pullRequest).toBeUndefined();
    expect(h.fake.branch("acme", "widgets", "feature")).toBe(res.commitSha);
    expect(h.fake.git.get(res.commitSha, "commit")!.tree).toBe(expectedTree());

    // The same change again (a retried task): already there, nothing moves.
    const again = await client.publishChanges(sameBranch);
    expect(again.commitSha).toBe(res.commitSha);
    expect(h.fake.branch("acme", "widgets", "feature")).toBe(res.commitSha);
  });

  it("refuses a same-branch publish once the branch moved, or onto a branch no open pull request heads", async () => {
    const client = await live();
    const onMain = await callError(
      client.publishChanges(request({ branch: "main", target: PublishTarget.SAME_BRANCH })),
    );
    expect(onMain.code).toBe(Code.FailedPrecondition);
    expect(onMain.rawMessage).toBe("branch main is not the head of an open pull request");
    expect(h.fake.branch("acme", "widgets", "main")).toBe(baseSha);

    h.fake.addPull("acme", "widgets", 3, { head: { label: "acme:feature", ref: "feature", sha: baseSha } });
    await client.publishChanges(request({ branch: "feature", target: PublishTarget.SAME_BRANCH }));
    const err = await callError(
      client.publishChanges(
        request({ branch: "feature", target: PublishTarget.SAME_BRANCH, files: [file("README.md", "# moved\n")] }),
      ),
    );
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/branch feature moved/);
  });

  it("in a dry run sends nothing and answers every request it would send, with git's blob ids", async () => {
    h = await setup({ auth: "none", env: { HOOKMESH_DRY_RUN: "1" } });
    const res = await h.api.publishChanges(request());
    expect(h.fake.received).toHaveLength(0);
    expect(res).toMatchObject({ dryRun: true, commitSha: "", branch: "hookmesh/t-1" });
    expect(res.requests.map((r) => r.method)).toEqual([
      "GET",
      "POST",
      "POST",
      "POST",
      "POST",
      "POST",
      "POST",
      "GET",
      "POST",
    ]);
    const tree = JSON.parse(res.requests[4]!.body) as {
      base_tree: string;
      tree: { path: string; sha: string | null }[];
    };
    expect(tree.base_tree).toBe("{base tree}");
    expect(tree.tree).toContainEqual({
      path: "src/widget.ts",
      mode: "100644",
      type: "blob",
      sha: gitBlobSha(Buffer.from("export const size = 2;\n")),
    });
    expect(tree.tree).toContainEqual({ path: "obsolete.txt", mode: "100644", type: "blob", sha: null });
    expect(gitBlobSha(Buffer.from("export const size = 2;\n"))).toBe(
      execFileSync("git", ["hash-object", "--stdin"], { input: "export const size = 2;\n", encoding: "utf8" }).trim(),
    );
    expect(JSON.parse(res.requests[5]!.body)).toMatchObject({ tree: "{tree}", parents: [baseSha] });
    expect(res.requests[8]!.url).toMatch(/\/repos\/acme\/widgets\/pulls$/);
  });

  it("refuses bad requests before sending anything, with precise codes", async () => {
    const client = await live();
    const cases: [PublishChangesRequest, Code, RegExp][] = [
      [request({ files: [file(".git/config", "[core]\n")] }), Code.InvalidArgument, /not a path inside the repository/],
      [request({ files: [file("../escape", "x")] }), Code.InvalidArgument, /not a path inside the repository/],
      [request({ files: [file("a", "x", "100600")] }), Code.InvalidArgument, /mode must be/],
      [request({ files: [] }), Code.InvalidArgument, /nothing to publish/],
      [request({ branch: "main" }), Code.InvalidArgument, /must start with "hookmesh\/"/],
      [request({ branch: "hookmesh/../main" }), Code.InvalidArgument, /not a branch name/],
      [request({ baseSha: "HEAD" }), Code.InvalidArgument, /base_sha/],
      [
        request({ files: Array.from({ length: 1001 }, (_, i) => file(`f${i}`, "x")) }),
        Code.ResourceExhausted,
        /1001 files; at most 1000/,
      ],
      [
        request({ files: [file("big", Buffer.alloc(3 * 1024 * 1024 + 1))] }),
        Code.ResourceExhausted,
        /at most 3145728 are published/,
      ],
    ];
    for (const [req, code, message] of cases) {
      const err = await callError(client.publishChanges(req));
      expect({ code: Code[err.code], message: err.rawMessage }).toMatchObject({
        code: Code[code],
        message: expect.stringMatching(message),
      });
    }
    expect(h.fake.received).toHaveLength(0);
  });
});
