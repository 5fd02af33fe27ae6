import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
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

const root = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/**
 * `npm run build` as the image's build stage runs it, into a folder of this test's own inside
 * the repository (so the compiled code finds node_modules above it, as /app/dist does in the
 * image); the compiled services then start under plain Node, with no TypeScript loader.
 */
describe("npm run build", () => {
  let out: string;
  let db: TestRedis;
  const started: ChildProcess[] = [];

  beforeAll(() => {
    out = mkdtempSync(join(root, ".build-test-"));
    build(root, out);
  }, 60_000);

  afterAll(async () => {
    for (const child of started) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    }
    await db?.cleanup();
    rmSync(out, { recursive: true, force: true });
  });

  it("emits JavaScript in the repository's layout, with compiled package entries and no TypeScript", () => {
    const files = readdirSync(out, { recursive: true, encoding: "utf8" });
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

  it("starts a compiled service under plain Node, which answers its health check", async () => {
    db = await testRedis("build");
    const tasks = spawn(process.execPath, [join(out, "services/tasks/src/main.js")], {
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
        env: { ...process.env, NODE_OPTIONS: "", HOOKMESH_HOME: home },
      });
      expect(stdout).toMatch(/^ca\s+\S+ca\.crt\s+created$/m);
      expect(stdout).toMatch(/^gateway\s+/m);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }, 30_000);
});
