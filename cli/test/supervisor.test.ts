import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accepts, alive, servicesOf, waitFor } from "./processes.js";

const bin = fileURLToPath(new URL("../bin/hookmesh.js", import.meta.url));

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
