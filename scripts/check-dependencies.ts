/**
 * Fails when a package imports a package it does not declare. Each workspace (and the root,
 * which owns gen/, bench/ and scripts/) must name in its own package.json every package its
 * files import: code that runs in production (a workspace's src/ and bin/, the root's gen/)
 * in `dependencies`, because the image installs with `npm ci --omit=dev`; tests, test helpers
 * and tooling in `dependencies` or `devDependencies`. npm hoists every package to the root
 * node_modules, so an undeclared import resolves today and breaks the day its owner drops it.
 *
 * Reads static imports and re-exports, `import()`, `import.meta.resolve()`, `require()`,
 * `require.resolve()` and `createRequire(…)(…)` with a string literal, at the start of a line
 * for the static forms, which is how every file here writes them.
 *
 * Usage: tsx scripts/check-dependencies.ts   (exit 1 and one line per undeclared import)
 */
import { readdirSync, readFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

export interface PackageJson {
  name: string;
  workspaces?: string[];
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

export interface Workspace {
  /** Relative to the repository root; "" for the root package. */
  dir: string;
  manifest: PackageJson;
}

export interface Finding {
  file: string;
  packageJson: string;
  imported: string;
  problem: string;
}

const SOURCE_FILE = /\.(?:[cm]?ts|[cm]?js|tsx|jsx)$/;
// Installed packages, and compiled output (`npm run build`'s dist/): its imports are the
// sources'. Hidden folders (.git, .hookmesh) hold no sources.
const SKIPPED_DIRS = new Set(["node_modules", "dist"]);

const IMPORT_PATTERNS: readonly RegExp[] = [
  /^\s*import\s+(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\*\s+as\s+[\w$]+|\{[^}]*\})?\s*from\s*["']([^"']+)["']/gm,
  /^\s*import\s*["']([^"']+)["']/gm,
  /^\s*export\s+(?:type\s+)?(?:\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s*from\s*["']([^"']+)["']/gm,
  /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  /\bimport\.meta\.resolve\(\s*["']([^"']+)["']\s*\)/g,
  /\brequire(?:\.resolve)?\(\s*["']([^"']+)["']\s*\)/g,
  /\bcreateRequire\([^)]*\)\(\s*["']([^"']+)["']\s*\)/g,
];

/** Every module specifier `source` imports, in order of appearance per form. */
export function importsOf(source: string): string[] {
  return IMPORT_PATTERNS.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1]!));
}

/** The npm package a bare specifier names (`@scope/name/sub` → `@scope/name`), or undefined. */
export function packageOf(specifier: string): string | undefined {
  if (/^[./#]/.test(specifier) || isBuiltin(specifier)) return undefined;
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/**
 * Code that runs in production: a workspace's src/ and bin/ (its testing/ helpers and testing.ts
 * entries excepted),
 * and the root's generated gen/.
 */
export function isProductionFile(workspaceDir: string, file: string): boolean {
  const parts = file.split("/");
  if (
    parts.includes("test") ||
    parts.includes("testing") ||
    /(^|\/)testing\.[cm]?[jt]s$|\.test\.[cm]?[jt]s$/.test(file)
  )
    return false;
  return workspaceDir === "" ? parts[0] === "gen" : parts[0] === "src" || parts[0] === "bin";
}

/** What is wrong with one import of `file` (relative to its workspace), or undefined. */
export function checkImport(workspace: Workspace, file: string, specifier: string): string | undefined {
  const name = packageOf(specifier);
  if (name === undefined || name === workspace.manifest.name) return undefined;
  const { dependencies = {}, devDependencies = {} } = workspace.manifest;
  if (name in dependencies) return undefined;
  const production = isProductionFile(workspace.dir, file);
  if (!(name in devDependencies)) {
    return production ? "not declared in dependencies" : "not declared in dependencies or devDependencies";
  }
  return production ? "declared in devDependencies, but production code needs it in dependencies" : undefined;
}

function readManifest(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;
}

/** The root package and each workspace (`dir` or `dir/*` patterns, as this repository uses). */
export function workspacesOf(root: string): Workspace[] {
  const manifest = readManifest(root);
  const dirs = (manifest.workspaces ?? []).flatMap((pattern) => {
    if (!pattern.endsWith("/*")) return [pattern];
    const parent = pattern.slice(0, -2);
    return readdirSync(join(root, parent), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => `${parent}/${entry.name}`);
  });
  return [{ dir: "", manifest }, ...dirs.map((dir) => ({ dir, manifest: readManifest(join(root, dir)) }))];
}

/** Source files under `dir`, relative to it, leaving out node_modules and the directories in `skip`. */
function sourceFiles(dir: string, skip: ReadonlySet<string>, prefix = ""): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const path = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) {
      const skipped = SKIPPED_DIRS.has(entry.name) || entry.name.startsWith(".") || skip.has(path);
      return skipped ? [] : sourceFiles(dir, skip, path);
    }
    return SOURCE_FILE.test(entry.name) ? [path] : [];
  });
}

export function checkDependencies(root: string): Finding[] {
  const workspaces = workspacesOf(root);
  const dirs = workspaces.map((w) => w.dir).filter((dir) => dir !== "");
  return workspaces.flatMap((workspace) => {
    const dir = join(root, workspace.dir);
    const packageJson = join(workspace.dir, "package.json");
    // A workspace inside another (the dashboard's web UI in the dashboard) answers for its own files.
    const prefix = workspace.dir === "" ? "" : `${workspace.dir}/`;
    const nested = new Set(
      dirs
        .filter((other) => other !== workspace.dir && other.startsWith(prefix))
        .map((other) => other.slice(prefix.length)),
    );
    return sourceFiles(dir, nested).flatMap((file) =>
      importsOf(readFileSync(join(dir, file), "utf8")).flatMap((imported) => {
        const problem = checkImport(workspace, file, imported);
        return problem === undefined ? [] : [{ file: join(workspace.dir, file), packageJson, imported, problem }];
      }),
    );
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const findings = checkDependencies(root);
  for (const { file, imported, problem, packageJson } of findings) {
    console.error(`${file.split(sep).join("/")}: imports ${imported}, ${problem} of ${packageJson}`);
  }
  if (findings.length > 0) {
    const pairs = new Set(findings.map((f) => `${f.packageJson} ${packageOf(f.imported)}`));
    console.error(
      `dependencies: ${pairs.size} undeclared (package.json, package) pairs; declare each where it is imported`,
    );
    process.exit(1);
  }
  console.log(`dependencies: every import is declared (${relative(process.cwd(), root) || "."})`);
}
