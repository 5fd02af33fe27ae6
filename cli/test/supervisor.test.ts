import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { freePort, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const bin = fileURLToPath(new URL("../bin/hookmesh.js", import.meta.url));

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The services whose parent is `pid`, from /proc (field 4 of stat, after the command in
 * parentheses); tsx's esbuild, also a child of the CLI, runs no service entry.
 */
function servicesOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return parent === pid && /\/src\/main\.[jt]s\0/.test(readFileSync(`/proc/${name}/cmdline`, "utf8"));
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${timeoutMs} ms`);
}

describe("hookmesh start, killed", () => {
  let db: TestRedis;
  beforeAll(async () => {
    db = await testRedis("supervisor");
  });
  afterAll(() => db.cleanup());

  it("leaves no service behind: SIGKILL of the supervisor frees every port within seconds", async () => {
    const [tasksPort, githubPort] = [await freePort(), await freePort()];
    const mesh = spawn(process.execPath, [bin, "start", "tasks", "github"], {
      env: {
        ...process.env,
        HOOKMESH_INSECURE: "1",
        TASKS_PORT: String(tasksPort),
        TASKS_REDIS_PREFIX: db.prefix,
        GITHUB_PORT: String(githubPort),
        GITHUB_URL: `http://127.0.0.1:${githubPort}`,
        GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      },
      stdio: "ignore",
    });
    try {
      await waitFor(async () => (await accepts(tasksPort)) && (await accepts(githubPort)), 30_000);
      const services = servicesOf(mesh.pid!);
      expect(services).toHaveLength(2);

      mesh.kill("SIGKILL");
      const gone = async () =>
        services.every((pid) => !alive(pid)) && !(await accepts(tasksPort)) && !(await accepts(githubPort));
      // Each stops as on SIGTERM (drained, Redis closed): about two seconds on a busy machine.
      expect(await waitFor(gone, 10_000)).toBeLessThan(10_000);
    } finally {
      if (mesh.exitCode === null && mesh.signalCode === null) mesh.kill("SIGTERM");
    }
  }, 45_000);
});
