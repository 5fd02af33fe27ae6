import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testGit } from "@hookmesh/kit/testing";
import type { Workspace } from "../src/workspace/workspace.js";

/**
 * A repository as the checkout side prepares one: a bare repository (the worker's mirror,
 * outside the sandbox) with one commit on `main`, and a clone of it at that commit (the run's
 * checkout). The base commit has text, an executable script, a symbolic link and a binary file.
 */
export function prepareCheckout(root: string, owner = "acme", repo = "widgets"): Workspace {
  const seed = join(root, "seed");
  const mirror = join(root, "mirror.git");
  const dir = join(root, "checkout");
  mkdirSync(join(seed, "src"), { recursive: true });
  testGit(root, "init", "-q", "-b", "main", seed);
  writeFileSync(join(seed, "README.md"), "# widgets\n");
  writeFileSync(join(seed, "src", "widget.ts"), "export const size = 1;\n");
  writeFileSync(
    join(seed, "src", "old-name.ts"),
    "export const unchanged = 'a file long enough to be seen as renamed';\n",
  );
  writeFileSync(join(seed, "run.sh"), "#!/bin/sh\necho run\n");
  chmodSync(join(seed, "run.sh"), 0o755);
  writeFileSync(join(seed, "logo.bin"), Buffer.from([0, 1, 2, 255, 0, 7]));
  writeFileSync(join(seed, "obsolete.txt"), "remove me\n");
  symlinkSync("README.md", join(seed, "docs-link"));
  testGit(seed, "add", "-A");
  testGit(seed, "commit", "-q", "-m", "initial");
  testGit(root, "clone", "-q", "--bare", seed, mirror);
  testGit(root, "clone", "-q", mirror, dir);
  const baseSha = testGit(dir, "rev-parse", "HEAD").trim();
  return {
    dir,
    repository: { owner, repo, installationId: 0n },
    baseRef: "main",
    baseSha,
    objectStore: join(mirror, "objects"),
  };
}
