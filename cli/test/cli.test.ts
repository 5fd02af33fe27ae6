import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { testRedis, type TestRedis } from "@hookmesh/kit/testing";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { signGitHubPayload } from "../../gateway/src/github/signature.js";
import { formatStatus } from "../src/status.js";

const bin = fileURLToPath(new URL("../bin/hookmesh.js", import.meta.url));
const run = promisify(execFile);

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  server.close();
  return port;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("timed out waiting");
}

describe("hookmesh start", () => {
  let db: TestRedis;
  let mesh: ChildProcess;
  let output = "";
  let env: NodeJS.ProcessEnv;
  const secret = "cli-test-secret";

  beforeAll(async () => {
    db = await testRedis("cli");
    const [tasksPort, gatewayPort, httpPort] = [await freePort(), await freePort(), await freePort()];
    env = {
      ...process.env,
      TASKS_PORT: String(tasksPort),
      TASKS_URL: `http://127.0.0.1:${tasksPort}`,
      TASKS_REDIS_PREFIX: db.prefix,
      GATEWAY_PORT: String(gatewayPort),
      GATEWAY_URL: `http://127.0.0.1:${gatewayPort}`,
      GATEWAY_HTTP_PORT: String(httpPort),
      GITHUB_WEBHOOK_SECRET: secret,
    };
    mesh = spawn(process.execPath, [bin, "start"], { env, stdio: ["ignore", "pipe", "pipe"] });
    mesh.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    mesh.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(async () => (await run(process.execPath, [bin, "status"], { env }).then(() => true)));
  });

  afterAll(async () => {
    if (mesh.exitCode === null) {
      mesh.kill("SIGTERM");
      await once(mesh, "exit");
    }
    await db.cleanup();
  });

  it("reports every service SERVING", async () => {
    const { stdout } = await run(process.execPath, [bin, "status"], { env });
    expect(stdout).toMatch(/^tasks\s+http:\/\/127\.0\.0\.1:\d+\s+SERVING$/m);
    expect(stdout).toMatch(/^gateway\s+http:\/\/127\.0\.0\.1:\d+\s+SERVING$/m);
  });

  it("turns a signed GitHub webhook into a task that a gRPC client can list", async () => {
    const body = JSON.stringify({ action: "opened", issue: { number: 1, title: "hi" }, repository: { name: "r", owner: { login: "o" } } });
    const deliveryId = randomUUID();
    const res = await fetch(`http://127.0.0.1:${env.GATEWAY_HTTP_PORT}/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "issues",
        "x-github-delivery": deliveryId,
        "x-hub-signature-256": signGitHubPayload(body, secret),
      },
      body,
    });
    expect(res.status).toBe(202);
    const { task_id } = (await res.json()) as { task_id: string };
    const tasks = createClient(TaskService, createGrpcTransport({ baseUrl: env.TASKS_URL! }));
    const { task } = await tasks.getTask({ id: task_id });
    expect(task?.event?.deliveryId).toBe(deliveryId);
  });

  it("stops every service on SIGTERM and exits 0", async () => {
    mesh.kill("SIGTERM");
    const [code] = await once(mesh, "exit");
    expect(code).toBe(0);
    expect(output).toMatch(/tasks\s+\| .*shutting down/);
    expect(output).toMatch(/gateway \| .*shutting down/);
    await expect(run(process.execPath, [bin, "status"], { env })).rejects.toMatchObject({ code: 1 });
  });
});

describe("hookmesh CLI", () => {
  it("refuses to start without Redis and names REDIS_URL", async () => {
    const port = await freePort();
    const failed = await run(process.execPath, [bin, "start"], { env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}` } }).catch((err: { code: number; stderr: string }) => err);
    expect(failed).toMatchObject({ code: 1 });
    expect((failed as { stderr: string }).stderr).toContain("REDIS_URL");
  });

  it("rejects unknown services and commands", async () => {
    await expect(run(process.execPath, [bin, "start", "nope"])).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("known: tasks, gateway") });
    await expect(run(process.execPath, [bin, "frobnicate"])).rejects.toMatchObject({ code: 2 });
  });

  it("formats status as aligned columns", () => {
    expect(
      formatStatus([
        { name: "tasks", url: "http://127.0.0.1:50051", status: "SERVING", healthy: true },
        { name: "gateway", url: "http://10.0.0.1:50050", status: "unreachable", healthy: false },
      ]),
    ).toBe(
      ["SERVICE  ADDRESS                 STATUS", "tasks    http://127.0.0.1:50051  SERVING", "gateway  http://10.0.0.1:50050   unreachable"].join("\n"),
    );
  });
});
