import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ServingStatus } from "@hookmesh/kit";
import { type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/health/v1/health_pb.js";
import { build, compiledManifest } from "../scripts/build.js";
import { workspacesOf } from "../scripts/check-dependencies.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/**
 * The image's two stages, without a container engine: the runtime stage's tree is made as the
 * Dockerfile makes it, in a folder outside the repository (so nothing resolves from the
 * repository's node_modules): every package.json and the lock, `npm ci --omit=dev`, then the
 * build stage's `npm run build` output as dist/. Its compiled services then start under plain
 * Node with production dependencies only and no TypeScript loader.
 */
describe("npm run build, and the image's runtime tree", () => {
  let app: string;
  let out: string;
  let db: TestRedis;
  const started: ChildProcess[] = [];

  beforeAll(async () => {
    app = mkdtempSync(join(tmpdir(), "hookmesh-image-"));
    for (const { dir } of workspacesOf(root)) {
      mkdirSync(join(app, dir), { recursive: true });
      copyFileSync(join(root, dir, "package.json"), join(app, dir, "package.json"));
    }
    copyFileSync(join(root, "package-lock.json"), join(app, "package-lock.json"));
    // From npm's cache, which the repository's own install filled.
    await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: app,
    });
    out = join(app, "dist");
    build(root, out);
  }, 180_000);

  afterAll(async () => {
    for (const child of started) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    }
    await db?.cleanup();
    rmSync(app, { recursive: true, force: true });
  });

  it("emits JavaScript in the repository's layout, with compiled package entries and no TypeScript", () => {
    const files = readdirSync(out, { recursive: true, encoding: "utf8" }).filter((f) => !f.startsWith("node_modules"));
    expect(files.filter((file) => file.endsWith(".ts"))).toEqual([]);
    for (const entry of [
      "gateway/src/main.js",
      "services/tasks/src/main.js",
      "services/agent/src/main.js",
      "services/github/src/main.js",
      "services/slack/src/main.js",
      "services/jira/src/main.js",
      "services/sentry/src/main.js",
      "cli/src/main.js",
      "gen/health/v1/health_pb.js",
      // Not TypeScript, run by the agent's sandbox: copied.
      "services/agent/src/sandbox/egress-forwarder.mjs",
    ]) {
      expect(existsSync(join(out, entry)), entry).toBe(true);
    }
    const kit = JSON.parse(readFileSync(join(out, "node_modules/@hookmesh/kit/package.json"), "utf8"));
    expect(kit.exports).toEqual({ ".": "./src/index.js", "./testing": "./src/testing/index.js" });
  });

  it("rewrites nested conditional exports and drops what only development uses", () => {
    expect(
      compiledManifest({
        name: "@hookmesh/x",
        exports: { ".": { types: "./src/index.ts", default: "./src/index.ts" }, "./package.json": "./package.json" },
        scripts: { start: "tsx src/main.ts" },
        bin: { x: "bin/x.js" },
        devDependencies: { vitest: "*" },
        dependencies: { pino: "*" },
      }),
    ).toEqual({
      name: "@hookmesh/x",
      exports: { ".": { types: "./src/index.js", default: "./src/index.js" }, "./package.json": "./package.json" },
      dependencies: { pino: "*" },
    });
  });

  it("starts a compiled service under plain Node with production dependencies only; it answers its health check", async () => {
    db = await testRedis("build");
    const tasks = spawn(process.execPath, [join(out, "services/tasks/src/main.js")], {
      cwd: app,
      env: {
        ...process.env,
        NODE_OPTIONS: "",
        HOOKMESH_INSECURE: "1",
        TASKS_PORT: "0",
        TASKS_REDIS_PREFIX: db.prefix,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    started.push(tasks);
    let output = "";
    const port = await new Promise<number>((resolve, reject) => {
      tasks.stdout!.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        const listening = /"port":(\d+),[^\n]*"msg":"listening"/.exec(output);
        if (listening) resolve(Number(listening[1]));
      });
      tasks.once("exit", (code) => reject(new Error(`tasks exited ${code}: ${output}`)));
    });
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    // Node 20 cannot run TypeScript and nothing registered a loader: the process runs dist/ only.
    expect(readFileSync(`/proc/${tasks.pid}/cmdline`, "utf8").split("\0").filter(Boolean)).toEqual([
      process.execPath,
      join(out, "services/tasks/src/main.js"),
    ]);
  }, 30_000);

  it("runs the compiled CLI, which makes the development identities (the Compose init service)", async () => {
    const home = mkdtempSync(join(tmpdir(), "hookmesh-build-"));
    try {
      const { stdout } = await run(process.execPath, [join(out, "cli/src/main.js"), "certs"], {
        cwd: app,
        env: { ...process.env, NODE_OPTIONS: "", HOOKMESH_HOME: home },
      });
      expect(stdout).toMatch(/^ca\s+\S+ca\.crt\s+created$/m);
      expect(stdout).toMatch(/^gateway\s+/m);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }, 30_000);
});
