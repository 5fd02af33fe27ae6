/**
 * Compiles every workspace's src/ and gen/ to JavaScript in dist/, keeping the repository's
 * layout so that the relative `../../../gen/…js` imports resolve as they do under tsx, and
 * makes dist/ a tree that plain Node runs: each workspace's package.json beside its compiled
 * code with its `exports` pointing at the .js files, and dist/node_modules/@hookmesh/* linking
 * to them, so `@hookmesh/kit` resolves to compiled kit. Third-party packages resolve from the
 * node_modules above dist/ (the repository's here, the image's /app/node_modules there).
 * Files other than TypeScript under a src/ (a .mjs script the agent's sandbox runs) are copied,
 * and so is the dist/ of a workspace with a build script of its own, which runs first.
 *
 * Usage: npm run build   then e.g.  node dist/services/tasks/src/main.js
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type PackageJson, workspacesOf } from "./check-dependencies.js";

type Manifest = PackageJson & { exports?: unknown; bin?: unknown; scripts?: Record<string, string>; main?: string };

/** `./src/index.ts` → `./src/index.js`, through the nested objects of a conditional `exports`. */
export function compiledTargets(value: unknown): unknown {
  if (typeof value === "string") return value.replace(/\.ts$/, ".js");
  if (Array.isArray(value)) return value.map(compiledTargets);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, target]) => [key, compiledTargets(target)]));
  }
  return value;
}

/** The package.json a compiled workspace gets: its name, type, dependencies and exports, no scripts or bin. */
export function compiledManifest(manifest: Manifest): Manifest {
  const { scripts: _scripts, bin: _bin, devDependencies: _dev, workspaces: _ws, ...kept } = manifest;
  return {
    ...kept,
    ...(manifest.exports !== undefined && { exports: compiledTargets(manifest.exports) }),
    ...(manifest.main !== undefined && { main: manifest.main.replace(/\.ts$/, ".js") }),
  };
}

function copyAssets(from: string, to: string): number {
  let copied = 0;
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    if (entry.isDirectory()) copied += copyAssets(source, join(to, entry.name));
    else if (!/\.[cm]?tsx?$/.test(entry.name)) {
      mkdirSync(to, { recursive: true });
      copyFileSync(source, join(to, entry.name));
      copied++;
    }
  }
  return copied;
}

export function build(root: string, outDir = join(root, "dist")): void {
  rmSync(outDir, { recursive: true, force: true });
  const tsc = join(dirname(createRequire(join(root, "package.json")).resolve("typescript/package.json")), "bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", outDir], {
      stdio: "inherit",
    });
  } catch {
    throw new Error("build: tsc failed (its errors are above)");
  }
  // gen/ belongs to the root package, whose "type": "module" makes its .js files ES modules.
  writeFileSync(join(outDir, "package.json"), `${JSON.stringify({ private: true, type: "module" }, null, 2)}\n`);
  let assets = 0;
  for (const { dir, manifest } of workspacesOf(root)) {
    if (dir === "") continue;
    const target = join(outDir, dir);
    mkdirSync(target, { recursive: true });
    // A workspace with a build of its own (a web UI that Vite bundles, say) builds into its
    // dist/, which its code finds beside its package.json, and so does the compiled code.
    if ((manifest as Manifest).scripts?.build !== undefined) {
      execFileSync("npm", ["run", "build", "-w", manifest.name], { cwd: root, stdio: "inherit" });
      cpSync(join(root, dir, "dist"), join(target, "dist"), { recursive: true });
    } else if (existsSync(join(root, dir, "src"))) {
      assets += copyAssets(join(root, dir, "src"), join(target, "src"));
    }
    writeFileSync(join(target, "package.json"), `${JSON.stringify(compiledManifest(manifest as Manifest), null, 2)}\n`);
    // npm puts a workspace's own copy of a package beside it when versions differ; linked
    // whether or not it exists here, since the image's production install may make one.
    symlinkSync(relative(target, join(dirname(outDir), dir, "node_modules")), join(target, "node_modules"));
    const link = join(outDir, "node_modules", manifest.name);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(relative(dirname(link), target), link);
  }
  console.log(`build: ${relative(process.cwd(), outDir) || "."} (${assets} assets copied)`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const root = fileURLToPath(new URL("..", import.meta.url));
  try {
    build(root, args[0] === "--out-dir" && args[1] ? args[1] : undefined);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
