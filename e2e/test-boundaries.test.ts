import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { importsOf, workspacesOf } from "../scripts/check-dependencies.js";

/**
 * Keeps the rule that no test reaches another service's code. A service's own tests use kit,
 * the contracts (`gen/`) and contract-level fakes, never another workspace package (kit
 * aside). Cross-service tests live here, in e2e/, and reach services only through their
 * packages' entries (`@hookmesh/tasks/testing`, ...) or as processes; they may share another
 * package's test support (a provider fake, say) only when it reaches no package's `src/`,
 * directly or through what it imports.
 */

const root = fileURLToPath(new URL("..", import.meta.url));
const e2e = join(root, "e2e");

/** The workspace packages' names, by folder. */
const packages = new Map(
  workspacesOf(root)
    .filter((workspace) => workspace.dir !== "")
    .map((workspace) => [join(root, workspace.dir), workspace.manifest.name]),
);
const KIT = "@hookmesh/kit";

/** The package folder a file is in, if any. */
function packageOf(file: string): string | undefined {
  return [...packages.keys()].find((folder) => file.startsWith(folder + sep));
}

/** The file a relative specifier names: TypeScript sources are imported with `.js`. */
function resolveRelative(from: string, specifier: string): string {
  const target = resolve(dirname(from), specifier);
  const ts = target.replace(/\.js$/, ".ts");
  return existsSync(ts) ? ts : target;
}

const inSrc = (file: string) => {
  const folder = packageOf(file);
  return folder !== undefined && file.startsWith(join(folder, "src") + sep);
};

/** The first `src/` file `file` reaches through relative imports, with the chain that gets there. */
function reachedSrc(file: string, seen = new Set<string>()): string[] | undefined {
  if (seen.has(file) || !existsSync(file)) return undefined;
  seen.add(file);
  for (const specifier of importsOf(readFileSync(file, "utf8"))) {
    if (!specifier.startsWith(".")) continue;
    const target = resolveRelative(file, specifier);
    if (inSrc(target)) return [target];
    const chain = reachedSrc(target, seen);
    if (chain) return [target, ...chain];
  }
  return undefined;
}

/** What is wrong with one test file's imports, one line each; none when it keeps the rule. */
function violations(file: string, source: string): string[] {
  const found: string[] = [];
  const own = packageOf(file);
  const name = (folder: string) => packages.get(folder) ?? folder;
  for (const specifier of importsOf(source)) {
    if (specifier.startsWith(".")) {
      const target = resolveRelative(file, specifier);
      const owner = packageOf(target);
      if (own !== undefined) {
        if (owner !== undefined && owner !== own)
          found.push(`imports ${specifier}, inside ${name(owner)}: a service's tests use kit, the contracts and fakes`);
      } else if (owner !== undefined) {
        const chain = inSrc(target) ? [target] : reachedSrc(target);
        if (chain)
          found.push(
            `imports ${specifier}, which reaches ${relative(root, chain.at(-1)!)}: reach a service through its package's entry`,
          );
      }
    } else if (own !== undefined && specifier.startsWith("@hookmesh/")) {
      const packageName = specifier.split("/").slice(0, 2).join("/");
      if (packageName !== KIT && packageName !== packages.get(own)) {
        found.push(`imports ${specifier}: a service's tests do not start another service; that is e2e/'s`);
      }
    }
  }
  return found;
}

/** Every TypeScript file under `folder`, fixtures and dependencies aside. */
function sources(folder: string): string[] {
  if (!existsSync(folder)) return [];
  return readdirSync(folder, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((file) => !file.includes(`${sep}node_modules${sep}`) && !file.includes(`${sep}fixtures${sep}`));
}

describe("test boundaries", () => {
  it("no test reaches another service's code", () => {
    const files = [...[...packages.keys()].flatMap((folder) => sources(join(folder, "test"))), ...sources(e2e)];
    expect(files.length).toBeGreaterThan(50);
    const found = files.flatMap((file) =>
      violations(file, readFileSync(file, "utf8")).map((v) => `${relative(root, file)}: ${v}`),
    );
    expect(found).toEqual([]);
  });

  it("catches a service test importing another service's src, its test helpers or its package", () => {
    const gatewayTest = join(root, "gateway", "test", "example.test.ts");
    expect(
      violations(gatewayTest, `import { matchRoute } from "../../services/tasks/src/routing/match.js";`),
    ).toHaveLength(1);
    expect(
      violations(gatewayTest, `import { FakeGitHub } from "../../services/github/test/fake-github.js";`),
    ).toHaveLength(1);
    expect(violations(gatewayTest, `import { startTasks } from "@hookmesh/tasks/testing";`)).toHaveLength(1);
    expect(
      violations(
        gatewayTest,
        `import { memoryLogger } from "@hookmesh/kit/testing";\nimport { build } from "../src/server.js";`,
      ),
    ).toEqual([]);
  });

  it("catches an e2e test reaching a package's src, directly or through a helper that does", () => {
    const e2eTest = join(e2e, "example.test.ts");
    expect(violations(e2eTest, `import { composeTasks } from "../services/tasks/src/compose.js";`)).toHaveLength(1);
    expect(violations(e2eTest, `import { API_TOKEN } from "../services/jira/test/helpers.js";`)).toHaveLength(1);
    expect(violations(e2eTest, `import { FakeGitHub } from "../services/github/test/fake-github.js";`)).toEqual([]);
    expect(violations(e2eTest, `import { startTasks } from "@hookmesh/tasks/testing";`)).toEqual([]);
  });
});
