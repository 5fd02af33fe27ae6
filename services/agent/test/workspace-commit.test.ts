import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { testGit } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { commitChanges } from "../src/workspace/commit.js";
import type { Workspace } from "../src/workspace/workspace.js";
import { prepareCheckout } from "./git-checkout.js";
import { scratchDir } from "./helpers.js";

const AUTHOR = { name: "hookmesh[bot]", email: "hookmesh[bot]@users.noreply.github.com" };

describe("commitChanges", () => {
  let root: string;
  let workspace: Workspace;
  beforeEach(async () => {
    root = await scratchDir("commit");
    workspace = prepareCheckout(root);
    mkdirSync(join(root, "scratch"));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const commit = (overrides: { maxBytes?: number } = {}) =>
    commitChanges({
      workspace,
      author: AUTHOR,
      message: "Fix the widget size",
      excluded: [".home"],
      scratchRoot: join(root, "scratch"),
      maxBytes: overrides.maxBytes ?? 1024 * 1024,
    });

  it("finds nothing when nothing changed, the worker's own files and git's aside", async () => {
    mkdirSync(join(workspace.dir, ".home", ".cache"), { recursive: true });
    writeFileSync(join(workspace.dir, ".home", ".cache", "x"), "agent's home");
    testGit(workspace.dir, "status");
    expect(await commit()).toBeUndefined();
  });

  it("collects added, modified, deleted, renamed, executable and binary files, and commits them as the bot", async () => {
    const dir = workspace.dir;
    writeFileSync(join(dir, "src", "widget.ts"), "export const size = 2;\n");
    writeFileSync(join(dir, "src", "new.ts"), "export const added = true;\n");
    rmSync(join(dir, "obsolete.txt"));
    renameSync(join(dir, "src", "old-name.ts"), join(dir, "src", "new-name.ts"));
    chmodSync(join(dir, "README.md"), 0o755);
    writeFileSync(join(dir, "logo.bin"), Buffer.from([0, 255, 254, 0]));

    const changes = (await commit())!;
    expect(changes.changed).toEqual(
      expect.arrayContaining([
        { status: "modified", path: "src/widget.ts" },
        { status: "added", path: "src/new.ts" },
        { status: "deleted", path: "obsolete.txt" },
        { status: "renamed", path: "src/new-name.ts", from: "src/old-name.ts" },
        { status: "modified", path: "README.md" },
        { status: "modified", path: "logo.bin" },
      ]),
    );
    expect(changes.changed).toHaveLength(6);
    const byPath = new Map(changes.files.map((file) => [file.path, file]));
    expect(byPath.get("src/widget.ts")).toEqual({
      path: "src/widget.ts",
      mode: "100644",
      content: Buffer.from("export const size = 2;\n"),
    });
    expect(byPath.get("obsolete.txt")?.content).toBeUndefined();
    expect(byPath.get("src/old-name.ts")?.content).toBeUndefined();
    expect(byPath.get("src/new-name.ts")?.content?.toString()).toContain("renamed");
    expect(byPath.get("README.md")?.mode).toBe("100755");
    expect(byPath.get("logo.bin")?.content).toEqual(Buffer.from([0, 255, 254, 0]));
    expect(changes.diff).toContain("src/widget.ts");
    expect(changes.diff).toContain("Binary files");
    expect(changes.commitSha).toMatch(/^[0-9a-f]{40}$/);
    // The tree is the checkout's own state, as git in the checkout itself would commit it.
    testGit(workspace.dir, "add", "-A");
    expect(changes.treeSha).toBe(testGit(workspace.dir, "write-tree").trim());
  });

  it("keeps a symbolic link a link, whatever it points at", async () => {
    rmSync(join(workspace.dir, "docs-link"));
    symlinkSync("/etc/shadow", join(workspace.dir, "docs-link"));
    const changes = (await commit())!;
    expect(changes.files).toEqual([{ path: "docs-link", mode: "120000", content: Buffer.from("/etc/shadow") }]);
  });

  it("never runs what a planted .git/config names (fsmonitor, hooks, filters)", async () => {
    const dir = workspace.dir;
    const marker = join(root, "pwned");
    const hook = join(dir, "evil.sh");
    writeFileSync(hook, `#!/bin/sh\ntouch ${marker}\n`);
    chmodSync(hook, 0o755);
    testGit(dir, "config", "core.fsmonitor", hook);
    testGit(dir, "config", "filter.evil.clean", hook);
    testGit(dir, "config", "core.hooksPath", dir);
    writeFileSync(join(dir, ".gitattributes"), "* filter=evil\n");
    writeFileSync(join(dir, "src", "widget.ts"), "export const size = 3;\n");

    const changes = (await commit())!;
    expect(existsSync(marker)).toBe(false);
    expect(changes.changed.map((c) => c.path).sort()).toEqual([".gitattributes", "evil.sh", "src/widget.ts"]);
    expect(changes.files.find((f) => f.path === "src/widget.ts")?.content?.toString()).toBe("export const size = 3;\n");
    // The planted configuration is live: git run in the checkout itself would have run it.
    testGit(dir, "status");
    expect(existsSync(marker)).toBe(true);
  });

  it("refuses changes over the byte limit", async () => {
    writeFileSync(join(workspace.dir, "big.txt"), "x".repeat(2048));
    await expect(commit({ maxBytes: 1024 })).rejects.toThrow(/more than 1024 bytes/);
  });
});
