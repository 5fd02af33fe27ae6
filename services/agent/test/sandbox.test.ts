import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AgentNetwork, type AgentProfile } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { OutputStream, RunOutcome } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { AgentRun, systemClock } from "../src/agent-run.js";
import { composeAgent } from "../src/compose.js";
import { loadConfig } from "../src/config.js";
import { CommandRunner } from "../src/runners/command.js";
import { BwrapSandbox, type Sandbox, SandboxUnavailableError } from "../src/sandbox/sandbox.js";
import { eventLog, fixture, profile, scratchDir, settings, testSandbox } from "./helpers.js";

const checkout = fileURLToPath(new URL("../../../", import.meta.url));
const WORKER_SECRET = `worker-secret-${randomBytes(6).toString("hex")}`;
const SIBLING_SECRET = `sibling-secret-${randomBytes(6).toString("hex")}`;
const CA_KEY = `ca-private-key-${randomBytes(6).toString("hex")}`;

/** A local TCP server standing in for a mesh port; counts who got through. */
async function listeningPort(): Promise<{ server: Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port, connections: () => connections };
}

describe("agent sandbox (bubblewrap)", () => {
  let root: string;
  let closers: (() => unknown)[];
  beforeEach(async () => {
    root = await scratchDir("sandbox");
    closers = [];
  });
  afterEach(async () => {
    for (const close of closers) await close();
    await rm(root, { recursive: true, force: true });
  });

  async function run(command: string, runProfile: AgentProfile, sandbox: Sandbox = testSandbox()) {
    const log = eventLog();
    const logged = memoryLogger("sandbox-test");
    const agent = new AgentRun({
      taskId: "task-1",
      prompt: "get out",
      profile: runProfile,
      runnerName: "command",
      runner: new CommandRunner(settings({ agentCommand: command, killGraceMs: 300, sandbox })),
      defaultMaxRunTimeMs: 30_000,
      workdirRoot: join(root, "runs"),
      workerEnv: { PATH: process.env.PATH, HOME: process.env.HOME, WORKER_SECRET },
      clock: systemClock,
      logger: logged.logger,
      onEvent: log.onEvent,
    });
    const report = await agent.run();
    return { report, stdout: log.text(OutputStream.STDOUT), stderr: log.text(OutputStream.STDERR), logs: logged.lines };
  }

  const escapeAgent = (targets: object) => `node ${fixture("escape-agent.mjs")} '${JSON.stringify(targets)}'`;

  it("keeps an escaping agent from other processes, secrets, host files, the mesh's ports and Redis", async () => {
    // A sibling service with a secret in its environment, as the gateway holds its webhook secret.
    const sibling: ChildProcess = spawn("sleep", ["60"], { env: { SIBLING_SECRET }, stdio: "ignore" });
    closers.push(() => sibling.kill("SIGKILL"));
    const home = join(root, "hookmesh-home");
    await mkdir(home);
    await writeFile(join(home, "ca.key"), CA_KEY);
    const mesh = await listeningPort();
    closers.push(() => mesh.server.close());
    const marker = `escape-${randomBytes(6).toString("hex")}`;
    const outside = [join(tmpdir(), marker), join(checkout, marker), join(home, marker)];

    const { report, stdout } = await run(
      escapeAgent({
        environ: true,
        read: [join(home, "ca.key"), join(checkout, "package.json"), `/proc/${process.pid}/environ`],
        write: outside,
        connect: [
          ["127.0.0.1", 6379],
          ["127.0.0.1", mesh.port],
        ],
      }),
      profile(),
    );

    expect(report.result.outcome).toBe(RunOutcome.SUCCEEDED);
    // Only the sandbox's own few processes are there to see (its init, the shell, node).
    const pids = stdout
      .find((line) => line.startsWith("processes "))!
      .slice("processes ".length)
      .split(",");
    expect(pids.length).toBeLessThanOrEqual(4);
    expect(pids).not.toContain(String(sibling.pid));
    const output = stdout.join("\n");
    for (const secret of [WORKER_SECRET, SIBLING_SECRET, CA_KEY]) expect(output).not.toContain(secret);
    const attempts = stdout.filter((line) => /^(read|write|connect) /.test(line));
    expect(attempts).toHaveLength(3 + 3 + 2);
    // The sandbox has a /tmp of its own: writes under it (the host's temporary directory, and
    // the checkout too when it was cloned under /tmp) land there and are gone with the run.
    const written = attempts.filter((line) => !/: blocked /.test(line));
    expect(written).toContain(`write ${outside[0]}: ok written`);
    for (const line of written) expect(line.startsWith(`write ${tmpdir()}/`)).toBe(true);
    // On the host: nothing written, nobody connected.
    for (const path of outside) expect(existsSync(path)).toBe(false);
    expect(mesh.connections()).toBe(0);
  });

  it("gives the agent the base environment, the task's variables and allowed_env only", async () => {
    const { stdout } = await run("env", profile({ allowedEnv: ["WORKER_SECRET"] }));
    const names = stdout.map((line) => line.split("=")[0]).sort();
    expect(names).toEqual(["HOME", "HOOKMESH_PROMPT", "HOOKMESH_TASK_ID", "PATH", "PWD", "TMPDIR", "WORKER_SECRET"]);
    expect(stdout).toContain(`WORKER_SECRET=${WORKER_SECRET}`);
  });

  it("has no network at all by default (none)", async () => {
    const mesh = await listeningPort();
    closers.push(() => mesh.server.close());
    const { stdout } = await run(
      escapeAgent({
        connect: [
          ["127.0.0.1", mesh.port],
          ["192.0.2.1", 80],
        ],
      }),
      profile({ network: AgentNetwork.NONE }),
    );
    expect(stdout).toEqual([
      expect.stringMatching(new RegExp(`^connect 127.0.0.1:${mesh.port}: blocked ECONNREFUSED`)),
      expect.stringMatching(/^connect 192.0.2.1:80: blocked ENETUNREACH/),
    ]);
    expect(mesh.connections()).toBe(0);
  });

  it("reaches the profile's egress hosts through the proxy, and nothing else", async () => {
    const allowed: HttpServer = createHttpServer((_req, res) => res.end("hello from the allowed host"));
    await new Promise<void>((resolve) => allowed.listen(0, "127.0.0.1", resolve));
    closers.push(() => allowed.close());
    const port = (allowed.address() as AddressInfo).port;
    // The allowlisted names stand for the local server; the proxy resolves them, not the agent.
    const sandbox = testSandbox({
      resolveHost: async (host) => (host.endsWith("example.test") ? ["127.0.0.1"] : []),
    });
    const targets = {
      get: [`http://allowed.example.test:${port}/`, `http://other.example.test:${port}/`, `http://127.0.0.1:${port}/`],
      tunnel: [`allowed.example.test:${port}`, "github.com:443", `api.wild.example.test:${port}`],
    };
    const { stdout, logs } = await run(
      `node ${fixture("proxy-agent.mjs")} '${JSON.stringify(targets)}' && ${escapeAgent({ connect: [["127.0.0.1", port]] })}`,
      profile({
        network: AgentNetwork.EGRESS,
        egressHosts: ["allowed.example.test", "*.wild.example.test"],
      }),
      sandbox,
    );
    expect(stdout).toEqual([
      `get http://allowed.example.test:${port}/: 200 hello from the allowed host`,
      expect.stringMatching(new RegExp(`^get http://other.example.test:${port}/: 403 `)),
      expect.stringMatching(new RegExp(`^get http://127.0.0.1:${port}/: 403 `)),
      `tunnel allowed.example.test:${port}: 200 hello from the allowed host`,
      "tunnel github.com:443: 403 ",
      // A wildcard name that resolves to loopback is refused: only exact names may lead there.
      `tunnel api.wild.example.test:${port}: 403 `,
      // Around the proxy, the host's loopback is not there at all.
      expect.stringMatching(new RegExp(`^connect 127.0.0.1:${port}: blocked ECONNREFUSED`)),
    ]);
    const refusals = logs().filter((line) => line.includes("egress refused"));
    expect(refusals).toHaveLength(4);
    expect(refusals.join("\n")).toContain("resolves to a loopback, private or link-local address");
  });

  it("shares the host's network only when the profile says host, and warns every time", async () => {
    const mesh = await listeningPort();
    closers.push(() => mesh.server.close());
    const { stdout, logs } = await run(
      escapeAgent({ connect: [["127.0.0.1", mesh.port]] }),
      profile({ network: AgentNetwork.HOST }),
    );
    expect(stdout).toEqual([`connect 127.0.0.1:${mesh.port}: ok connected`]);
    expect(logs().filter((line) => line.includes("network HOST"))).toHaveLength(1);
  });

  it("fails a profile with an unknown network, not retryable", async () => {
    const { report } = await run("echo should not run", profile({ network: 42 as AgentNetwork }));
    expect(report).toMatchObject({
      result: { outcome: RunOutcome.AGENT_ERROR, error: expect.stringMatching(/^unknown network 42 /) },
      retryable: false,
    });
  });

  it("composes a worker only when its sandbox works, or when AGENT_SANDBOX=off says so (warned)", async () => {
    const compose = (env: Record<string, string>) => {
      const logged = memoryLogger("compose-test");
      const agent = composeAgent(loadConfig({ HOOKMESH_INSECURE: "1", ...env }), {
        logger: logged.logger,
        env: { PATH: process.env.PATH },
      });
      return { agent, logs: logged.lines };
    };
    expect(() => compose({ AGENT_SANDBOX_BWRAP: "/nonexistent/bwrap" })).toThrow(SandboxUnavailableError);
    expect(() => compose({ AGENT_SANDBOX_READONLY_PATHS: "/nonexistent/tools" })).toThrow(
      /AGENT_SANDBOX_READONLY_PATHS/,
    );
    const sandboxed = compose({});
    expect(sandboxed.agent.sandbox.mode).toBe("bwrap");
    await sandboxed.agent.close();
    const off = compose({ AGENT_SANDBOX: "off", AGENT_SANDBOX_BWRAP: "/nonexistent/bwrap" });
    expect(off.agent.sandbox.mode).toBe("off");
    expect(off.logs().filter((line) => line.includes("AGENT_SANDBOX=off"))).toHaveLength(1);
    await off.agent.close();
  });

  it("refuses to start a worker whose bubblewrap cannot run, naming the package and AGENT_SANDBOX", () => {
    const missing = new BwrapSandbox({ bwrap: "/nonexistent/bwrap", readonlyPaths: [], runnerBinaries: [], path: "" });
    expect(() => missing.probe()).toThrow(SandboxUnavailableError);
    expect(() => missing.probe()).toThrow(/"bubblewrap" package.*AGENT_SANDBOX=off/);
    expect(() => testSandbox().probe()).not.toThrow();
  });
});
