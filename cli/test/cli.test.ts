import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  type ClientFactory,
  createClientFactory,
  envIdentity,
  type Identity,
  openIdentity,
  ServingStatus,
} from "@hookmesh/kit";
import { callError, freePort, memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import { RouteService } from "../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { formatStatus } from "../src/status.js";

const bin = fileURLToPath(new URL("../bin/hookmesh.js", import.meta.url));
const run = promisify(execFile);

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("timed out waiting");
}

/** The environment of the service process started from `entry` by the mesh whose home is `home`. */
function serviceEnviron(entry: string, home: string): string[] {
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(entry)) continue;
      const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      if (environ.includes(`HOOKMESH_HOME=${home}`)) return environ;
    } catch {}
  }
  throw new Error(`no process runs ${entry}`);
}

describe("hookmesh start", () => {
  let db: TestRedis;
  let mesh: ChildProcess;
  let output = "";
  let env: NodeJS.ProcessEnv;
  let home: string;
  let token: string;
  let operator: Identity;
  let clients: ClientFactory;
  const secret = "cli-test-secret";

  beforeAll(async () => {
    db = await testRedis("cli");
    const [tasksPort, agentPort, gatewayPort, httpPort, dashboardPort, dashboardHttpPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const integrationPorts = Object.fromEntries(
      await Promise.all(
        ["GITHUB", "SLACK", "JIRA", "SENTRY"].map(async (name) => [name, String(await freePort())] as const),
      ),
    );
    // Under the defaults: `hookmesh start` makes the identities in a home of the test's own,
    // every service speaks mTLS, and the CLI's commands call as the operator with no flags.
    home = mkdtempSync(join(tmpdir(), "hookmesh-cli-"));
    env = {
      ...process.env,
      HOOKMESH_HOME: home,
      HOOKMESH_INSECURE: "",
      TASKS_PORT: String(tasksPort),
      TASKS_URL: `https://127.0.0.1:${tasksPort}`,
      TASKS_REDIS_PREFIX: db.prefix,
      AGENT_PORT: String(agentPort),
      ...Object.fromEntries(
        Object.entries(integrationPorts).flatMap(([name, port]) => [
          [`${name}_PORT`, port],
          [`${name}_URL`, `https://127.0.0.1:${port}`],
          [`${name}_REDIS_PREFIX`, `${db.prefix}${name.toLowerCase()}:`],
        ]),
      ),
      AGENT_URL: `https://127.0.0.1:${agentPort}`,
      GATEWAY_PORT: String(gatewayPort),
      GATEWAY_URL: `https://127.0.0.1:${gatewayPort}`,
      GATEWAY_REDIS_PREFIX: `${db.prefix}gateway:`,
      GATEWAY_HTTP_PORT: String(httpPort),
      GATEWAY_HTTP_URL: `http://127.0.0.1:${httpPort}`,
      DASHBOARD_PORT: String(dashboardPort),
      DASHBOARD_URL: `https://127.0.0.1:${dashboardPort}`,
      DASHBOARD_HTTP_PORT: String(dashboardHttpPort),
      GITHUB_WEBHOOK_SECRET: secret,
      AGENT_COMMAND: "echo answer from the agent",
      // Free admin ports: the defaults, each gRPC port + 1000, may be another process's.
      ...Object.fromEntries(
        ["TASKS", "AGENT", "GATEWAY", "GITHUB", "SLACK", "JIRA", "SENTRY", "DASHBOARD"].map((name) => [
          `${name}_ADMIN_PORT`,
          "0",
        ]),
      ),
    };
    // A bearer token for scripts, made before the start so that the services read its hash.
    env.HOOKMESH_OPERATOR_TOKENS_FILE = join(home, "operator-tokens");
    token = (await run(process.execPath, [bin, "token", "create", "operator"], { env })).stdout.trim();
    mesh = spawn(process.execPath, [bin, "start"], { env, stdio: ["ignore", "pipe", "pipe"] });
    mesh.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    mesh.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    // The dashboard's embedded PostgreSQL makes its files on a first start, and nine services load
    // under tsx: a minute was once not enough while the whole suite shared two cores.
    await waitFor(async () => await run(process.execPath, [bin, "status"], { env }).then(() => true), 120_000);
    operator = openIdentity(envIdentity({ HOOKMESH_HOME: home }, "operator"), memoryLogger("operator").logger)!;
    clients = createClientFactory({ logger: memoryLogger("operator").logger, identity: operator });
  }, 150_000);

  afterAll(async () => {
    clients?.close();
    operator?.close();
    if (mesh.exitCode === null) {
      mesh.kill("SIGTERM");
      await once(mesh, "exit");
    }
    await db.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  it("reports every service SERVING", async () => {
    const { stdout } = await run(process.execPath, [bin, "status"], { env });
    expect(stdout).toMatch(/^tasks\s+https:\/\/127\.0\.0\.1:\d+\s+SERVING$/m);
    for (const name of ["agent", "github", "slack", "jira", "sentry", "dashboard"]) {
      expect(stdout).toMatch(new RegExp(`^${name}\\s+https://127\\.0\\.0\\.1:\\d+\\s+SERVING$`, "m"));
    }
    expect(stdout).toMatch(/^gateway\s+https:\/\/127\.0\.0\.1:\d+\s+SERVING$/m);
  });

  it("runs agents sandboxed, in a worker that holds none of the other services' secrets", () => {
    expect(output).toMatch(/agent\s+\|.*"sandbox":"bwrap".*leasing tasks/);
    const environ = (entry: string) => serviceEnviron(entry, home);
    expect(environ("gateway/src/main.ts")).toContain(`GITHUB_WEBHOOK_SECRET=${secret}`);
    const agent = environ("services/agent/src/main.ts");
    expect(agent).toContain(`HOOKMESH_HOME=${home}`);
    expect(agent.filter((variable) => variable.startsWith("GITHUB_WEBHOOK_SECRET="))).toEqual([]);
  });

  // Eight CLI processes, each starting Node and tsx: more than the default 20 s on a busy machine.
  it("turns a signed GitHub mention into a task that an agent runs, visible through the CLI", async () => {
    const { stdout: sent } = await run(process.execPath, [bin, "send", "github", "--mention", "please say hi"], {
      env,
    });
    const [, deliveryId] = /^delivery (\S+) {2}github issue_comment {2}POST \S+\/webhooks\/github {2}202$/m.exec(sent)!;
    const [, task_id] = /^task (\S+) {2}[A-Z]+: /m.exec(sent)!;
    const tasks = clients.client(TaskService, env.TASKS_URL!, "tasks");
    expect((await tasks.getTask({ id: task_id })).task?.event?.deliveryId).toBe(deliveryId);

    // `tasks tail` streams the timeline until the task ends.
    const { stdout: tail } = await run(process.execPath, [bin, "tasks", "tail", task_id], { env });
    expect(tail).toMatch(/ RECEIVED github issue_comment delivery /);
    expect(tail).toMatch(/ LEASED worker /);
    expect(tail).toMatch(/#1 > answer from the agent/);
    expect(tail).toMatch(/ COMPLETED exit 0/);
    const { task } = await tasks.getTask({ id: task_id });
    expect(task).toMatchObject({ state: TaskState.SUCCEEDED, result: { answer: "answer from the agent" } });

    const { stdout: list } = await run(process.execPath, [bin, "tasks", "list", "--state", "succeeded"], { env });
    expect(list).toContain(`${task_id}  `);
    expect(list).toContain("SUCCEEDED  github:octocat/hello-world#1");
    const { stdout: show } = await run(process.execPath, [bin, "tasks", "show", task_id], { env });
    expect(JSON.parse(show)).toMatchObject({ id: task_id, state: "TASK_STATE_SUCCEEDED" });
    await expect(run(process.execPath, [bin, "tasks", "cancel", task_id], { env })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("FailedPrecondition: task"),
    });
    const { stdout: routes } = await run(process.execPath, [bin, "routes", "list"], { env });
    expect(routes).toMatch(/^github-mention\s+100\s+github\s+mention$/m);

    const { stdout: deliveries } = await run(process.execPath, [bin, "deliveries", "list", "--status", "accepted"], {
      env,
    });
    const [logged] = deliveries.split("\n");
    expect(logged).toMatch(new RegExp(`github\\s+ACCEPTED\\s+202\\s+issue_comment\\s+task ${task_id}$`));
    const { stdout: redelivered } = await run(
      process.execPath,
      [bin, "deliveries", "redeliver", logged!.split(" ")[0]!],
      { env },
    );
    expect(redelivered.trimEnd()).toMatch(new RegExp(`DUPLICATE\\s+202\\s+issue_comment\\s+task ${task_id}$`));
  }, 60_000);

  it("made the development identities on first start, and lets a caller without one do nothing but health checks", async () => {
    const { stdout } = await run(process.execPath, [bin, "certs"], { env });
    expect(stdout).toMatch(new RegExp(`^ca\\s+${home}/tls/ca.crt  current$`, "m"));
    expect(stdout).toMatch(
      /^operator\s+\S+operator.crt {2}current, spiffe:\/\/hookmesh.local\/operator, until \d{4}-/m,
    );
    const anonymous = createGrpcTransport({
      baseUrl: env.TASKS_URL!,
      nodeOptions: { ca: readFileSync(join(home, "tls", "ca.crt")) },
    });
    expect((await createClient(Health, anonymous).check({ service: "" })).status).toBe(ServingStatus.SERVING);
    for (const call of [
      createClient(TaskService, anonymous).listTasks({}),
      createClient(RouteService, anonymous).listRoutes({}),
    ]) {
      expect((await callError(call)).code).toBe(Code.Unauthenticated);
    }
    // An identity the contract does not name for a method is refused too: the gateway may submit events, not list tasks.
    const gateway = openIdentity(envIdentity({ HOOKMESH_HOME: home }, "gateway"), memoryLogger("gateway").logger)!;
    const asGateway = createClientFactory({
      logger: memoryLogger("gateway").logger,
      identity: gateway,
      retry: { maxAttempts: 1 },
    });
    try {
      expect((await callError(asGateway.client(TaskService, env.TASKS_URL!, "tasks").listTasks({}))).code).toBe(
        Code.PermissionDenied,
      );
    } finally {
      asGateway.close();
      gateway.close();
    }
  });

  it("takes a bearer token made by `hookmesh token create` instead of a certificate", async () => {
    const { stdout } = await run(process.execPath, [bin, "routes", "list"], { env: { ...env, HOOKMESH_TOKEN: token } });
    expect(stdout).toMatch(/^github-mention\s+100\s+github\s+mention$/m);
    await expect(
      run(process.execPath, [bin, "routes", "list"], { env: { ...env, HOOKMESH_TOKEN: "not-a-token" } }),
    ).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("Unauthenticated"),
    });
  });

  it("sends a mention and follows its task to the agent's answer", async () => {
    const { stdout } = await run(process.execPath, [bin, "send", "github", "--follow"], { env });
    expect(stdout).toMatch(/ RECEIVED github issue_comment delivery /);
    expect(stdout).toMatch(/#1 > answer from the agent/);
    expect(stdout).toMatch(/^task \S+ {2}SUCCEEDED: agent succeeded$/m);
    expect(stdout).toMatch(/^answer: answer from the agent$/m);
  });

  // Drains the worker, so it runs after every test that needs an agent.
  it("reports status as JSON, pages the delivery log, lists the agent worker's runs and drains it", async () => {
    const status = JSON.parse((await run(process.execPath, [bin, "status", "--json"], { env })).stdout);
    expect(status.services).toContainEqual({ name: "agent", url: env.AGENT_URL, status: "SERVING", healthy: true });
    // Two deliveries by now (the earlier tests' sends): a page of one says how to get the next.
    const { stdout: page } = await run(process.execPath, [bin, "deliveries", "list", "--page-size", "1"], { env });
    expect(page).toMatch(
      /^\S+ {2}\S+ {2}github .*\nnext page: hookmesh deliveries list --page-size 1 --page-token \S+\n$/,
    );
    const logged = JSON.parse(
      (await run(process.execPath, [bin, "deliveries", "list", "--all", "--page-size", "1", "--json"], { env })).stdout,
    );
    expect(logged.deliveries.length).toBeGreaterThanOrEqual(2);
    expect(logged.deliveries[0]).toMatchObject({
      provider: "PROVIDER_GITHUB",
      status: expect.stringMatching(/^DELIVERY_STATUS_/),
    });
    expect(logged.nextPageToken).toBeUndefined();

    const { stdout: list } = await run(process.execPath, [bin, "agents", "list"], { env });
    expect(list).toMatch(/^worker \S+ {2}0\/\d+ slots busy\n$/);
    const listed = JSON.parse((await run(process.execPath, [bin, "agents", "list", "--json"], { env })).stdout);
    expect(listed).toEqual({ workerId: expect.any(String), concurrency: expect.any(Number) });
    const { stdout: drained } = await run(process.execPath, [bin, "agents", "drain"], { env });
    expect(drained).toBe("draining; 0 runs in progress\n");
    const after = JSON.parse((await run(process.execPath, [bin, "agents", "list", "--json"], { env })).stdout);
    expect(after).toMatchObject({ workerId: listed.workerId, draining: true });
  }, 60_000);

  it("prints a one-time sign-in URL for the dashboard, which signs a browser in once", async () => {
    const { stdout } = await run(process.execPath, [bin, "dashboard", "--name", "ana"], { env });
    const url = /^(http:\/\/127\.0\.0\.1:\d+\/login\?token=[\w-]+)$/m.exec(stdout)?.[1];
    expect(url, stdout).toBeDefined();
    expect(url?.startsWith(`http://127.0.0.1:${env.DASHBOARD_HTTP_PORT}/`)).toBe(true);
    const first = await fetch(url!, { redirect: "manual" });
    expect(first.status).toBe(303);
    expect(first.headers.get("set-cookie")).toMatch(/^hookmesh_session=.+; HttpOnly; SameSite=Strict/);
    const again = await fetch(url!, { redirect: "manual" });
    expect(again.headers.get("location")).toBe("/login?error=expired");
    const json = JSON.parse((await run(process.execPath, [bin, "dashboard", "--json"], { env })).stdout);
    expect(json.url).toMatch(/\/login\?token=/);
    expect(json.expireTime).toMatch(/Z$/);
  });

  it("stops every service on SIGTERM and exits 0", async () => {
    mesh.kill("SIGTERM");
    const [code] = await once(mesh, "exit");
    expect(code).toBe(0);
    expect(output).toMatch(/tasks\s+\| .*shutting down/);
    expect(output).toMatch(/gateway\s+\| .*shutting down/);
    expect(output).toMatch(/dashboard \| .*shutting down/);
    await expect(run(process.execPath, [bin, "status"], { env })).rejects.toMatchObject({ code: 1 });
  });
});

describe("hookmesh CLI", () => {
  it("refuses to start without Redis and names REDIS_URL", async () => {
    const port = await freePort();
    const failed = await run(process.execPath, [bin, "start"], {
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}` },
    }).catch((err: { code: number; stderr: string }) => err);
    expect(failed).toMatchObject({ code: 1 });
    expect((failed as { stderr: string }).stderr).toContain("REDIS_URL");
  });

  it("ends quietly when its reader closes the pipe early", async () => {
    // `| true` exits without reading, long before Node has started: the usage meets a closed pipe.
    const { stderr } = await run("sh", ["-c", `"${process.execPath}" "${bin}" help | true`]);
    expect(stderr).toBe("");
  });

  it("rejects unknown services and commands", async () => {
    await expect(run(process.execPath, [bin, "start", "nope"])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("known: tasks, github, slack, jira, sentry, agent, gateway"),
    });
    await expect(run(process.execPath, [bin, "frobnicate"])).rejects.toMatchObject({ code: 2 });
  });

  it("formats status as aligned columns", () => {
    expect(
      formatStatus([
        { name: "tasks", url: "http://127.0.0.1:50051", status: "SERVING", healthy: true },
        { name: "gateway", url: "http://10.0.0.1:50050", status: "unreachable", healthy: false },
      ]),
    ).toBe(
      [
        "SERVICE  ADDRESS                 STATUS",
        "tasks    http://127.0.0.1:50051  SERVING",
        "gateway  http://10.0.0.1:50050   unreachable",
      ].join("\n"),
    );
  });
});
