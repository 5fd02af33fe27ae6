import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { envIdentity } from "@hookmesh/kit";
import { freePortLadder, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accepts, alive, servicesOf, waitFor } from "./processes.js";

const bin = fileURLToPath(new URL("../bin/hookmesh.js", import.meta.url));

/**
 * Whether the services take a list of peers in `<NAME>_URL` (kit's balanced clients): then
 * tasks runs twice too, and the gateways and workers call it through the list of its replicas.
 */
const peerLists = (() => {
  try {
    envIdentity({ HOOKMESH_INSECURE: "1" }, "gateway", {
      peers: { TASKS_URL: "http://127.0.0.1:1,http://127.0.0.1:2" },
    });
    return true;
  } catch {
    return false;
  }
})();
const TASKS = peerLists ? 2 : 1;
const REPLICAS = `${peerLists ? "tasks=2," : ""}gateway=2,agent=2`;
const PROCESSES = 5 + TASKS;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function hookmesh(args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function environ(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .filter((entry) => entry.includes("="))
      .map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]),
  );
}

/**
 * `hookmesh start --replicas` as a person runs it: two gateways and two agent workers beside
 * one github service and one tasks service (two once services take peer lists), each replica on its own ports, a mention through each
 * gateway's edge done by an agent, and nothing left once the supervisor is SIGKILLed.
 * Cleartext on loopback: the mTLS start is cli.test.ts's; this one is about the layout.
 */
describe("hookmesh start --replicas", () => {
  let db: TestRedis;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let mesh: ChildProcess;
  let output = "";
  const ports = { tasks: 0, github: 0, agent: 0, gateway: 0, edge: 0 };

  beforeAll(async () => {
    db = await testRedis("replicas-start");
    home = mkdtempSync(join(tmpdir(), "hookmesh-replicas-"));
    ports.tasks = await freePortLadder(100, TASKS);
    ports.github = await freePortLadder(100, 1);
    ports.agent = await freePortLadder(100, 2);
    ports.gateway = await freePortLadder(100, 2);
    ports.edge = await freePortLadder(1, 2);
    env = {
      ...process.env,
      HOOKMESH_HOME: home,
      HOOKMESH_INSECURE: "1",
      TASKS_PORT: String(ports.tasks),
      TASKS_URL: `http://127.0.0.1:${ports.tasks}`,
      TASKS_REDIS_PREFIX: db.prefix,
      GITHUB_PORT: String(ports.github),
      GITHUB_URL: `http://127.0.0.1:${ports.github}`,
      GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      AGENT_PORT: String(ports.agent),
      AGENT_COMMAND: "echo answer from the agent",
      AGENT_WORKDIR: join(home, "runs"),
      // This test is about the layout; the agent's sandbox (bubblewrap) is services/agent's tests'.
      AGENT_SANDBOX: "off",
      GATEWAY_PORT: String(ports.gateway),
      GATEWAY_HTTP_PORT: String(ports.edge),
      GATEWAY_REDIS_PREFIX: `${db.prefix}gateway:`,
      GITHUB_WEBHOOK_SECRET: "replicas-test-secret",
      // Free admin ports: the defaults, each gRPC port + 1000, may be another process's.
      ...Object.fromEntries(["TASKS", "GITHUB", "AGENT", "GATEWAY"].map((name) => [`${name}_ADMIN_PORT`, "0"])),
    };
    mesh = spawn(process.execPath, [bin, "start", "tasks", "github", "agent", "gateway", "--replicas", REPLICAS], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    mesh.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    mesh.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(async () => {
      const { stdout } = await hookmesh(["status", "--replicas", REPLICAS, "--json"], env);
      const rows = JSON.parse(stdout || '{"services":[]}').services as { name: string; healthy: boolean }[];
      return rows.filter((row) => row.healthy).length === PROCESSES;
    }, 90_000);
  }, 120_000);

  afterAll(async () => {
    if (mesh.exitCode === null && mesh.signalCode === null) mesh.kill("SIGTERM");
    await db.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  it("prints every replica's addresses and names each replica's output", () => {
    const at = (port: number) => `127.0.0.1:${port}`;
    expect(output).toMatch(
      new RegExp(
        `^gateway-1 +grpc http://${at(ports.gateway + 100)} +admin \\(a free port\\) +edge http://${at(ports.edge + 1)}$`,
        "m",
      ),
    );
    expect(output).toMatch(new RegExp(`^agent-1 +grpc http://${at(ports.agent + 100)} `, "m"));
    const tasks = TASKS > 1 ? "tasks-1" : "tasks";
    expect(output).toMatch(new RegExp(`^${tasks} +grpc http://${at(ports.tasks + 100 * (TASKS - 1))} `, "m"));
    for (const name of ["gateway-0", "gateway-1", "agent-0", "agent-1"]) {
      expect(output).toMatch(new RegExp(`^${name} +\\| `, "m"));
    }
  });

  it("shows every replica in hookmesh status", async () => {
    const { stdout } = await hookmesh(["status", "--replicas", REPLICAS], env);
    expect(stdout).toMatch(new RegExp(`^gateway-0 +http://127\\.0\\.0\\.1:${ports.gateway} +SERVING$`, "m"));
    expect(stdout).toMatch(new RegExp(`^gateway-1 +http://127\\.0\\.0\\.1:${ports.gateway + 100} +SERVING$`, "m"));
    expect(stdout).toMatch(new RegExp(`^agent-1 +http://127\\.0\\.0\\.1:${ports.agent + 100} +SERVING$`, "m"));
    expect(stdout).toMatch(/^slack +http:\/\/127\.0\.0\.1:\d+ +unreachable$/m);
  });

  it("gives each replica its own ports and directories, and every process the replicas' lists", () => {
    const processes = servicesOf(mesh.pid!).map(environ);
    expect(processes).toHaveLength(PROCESSES);
    const agentList = `http://127.0.0.1:${ports.agent},http://127.0.0.1:${ports.agent + 100}`;
    const gatewayList = `http://127.0.0.1:${ports.gateway},http://127.0.0.1:${ports.gateway + 100}`;
    const tasksList =
      TASKS > 1 ? `http://127.0.0.1:${ports.tasks},http://127.0.0.1:${ports.tasks + 100}` : env.TASKS_URL;
    for (const variables of processes) {
      expect(variables).toMatchObject({ AGENT_URL: agentList, GATEWAY_URL: gatewayList, TASKS_URL: tasksList });
    }
    const agents = processes.filter((variables) => variables.AGENT_WORKDIR?.startsWith(join(home, "runs", "agent-")));
    expect(agents.map((v) => [v.AGENT_PORT, v.AGENT_WORKDIR]).sort()).toEqual([
      [String(ports.agent), join(home, "runs", "agent-0")],
      [String(ports.agent + 100), join(home, "runs", "agent-1")],
    ]);
    const gateways = processes.filter((variables) => variables.GITHUB_WEBHOOK_SECRET !== undefined);
    expect(gateways.map((v) => [v.GATEWAY_PORT, v.GATEWAY_HTTP_PORT]).sort()).toEqual([
      [String(ports.gateway), String(ports.edge)],
      [String(ports.gateway + 100), String(ports.edge + 1)],
    ]);
  });

  it("turns a GitHub mention sent to each gateway's edge into a task that SUCCEEDED", async () => {
    for (const edge of [ports.edge, ports.edge + 1]) {
      const gatewayHttp = `http://127.0.0.1:${edge}`;
      const sent = await hookmesh(["send", "github", "--mention", "please say hi", "--follow"], {
        ...env,
        GATEWAY_HTTP_URL: gatewayHttp,
      });
      expect(sent, sent.stderr).toMatchObject({ code: 0 });
      expect(sent.stdout).toMatch(new RegExp(`POST ${gatewayHttp}/webhooks/github {2}202$`, "m"));
      expect(sent.stdout).toMatch(/^task \S+ {2}SUCCEEDED/m);
      expect(sent.stdout).toMatch(/^answer: answer from the agent$/m);
    }
  }, 90_000);

  it("leaves no replica behind: SIGKILL of the supervisor frees every port within seconds", async () => {
    const pids = servicesOf(mesh.pid!);
    expect(pids).toHaveLength(PROCESSES);
    const tasksPorts = Array.from({ length: TASKS }, (_, i) => ports.tasks + 100 * i);
    const grpcPorts = [...tasksPorts, ports.github, ports.agent, ports.agent + 100, ports.gateway, ports.gateway + 100];
    const edgePorts = [ports.edge, ports.edge + 1];
    mesh.kill("SIGKILL");
    const gone = async () => {
      if (pids.some(alive)) return false;
      const open = await Promise.all([...grpcPorts, ...edgePorts].map(accepts));
      return open.every((accepting) => !accepting);
    };
    expect(await waitFor(gone, 15_000)).toBeLessThan(15_000);
  }, 30_000);
});
