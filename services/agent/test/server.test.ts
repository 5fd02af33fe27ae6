import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type ClientFactory, ServingStatus } from "@hookmesh/kit";
import {
  callError,
  memoryLogger,
  routerClientFactory,
  type TestIdentities,
  testIdentities,
} from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { AgentService } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import { RunOutcome } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type ComposedAgent, composeAgent } from "../src/compose.js";
import { loadConfig } from "../src/config.js";
import { FakeTasks } from "./fake-tasks.js";
import { scratchDir, waitFor } from "./helpers.js";

describe("agent server", () => {
  let tasks: FakeTasks;
  let workdirRoot: string;
  let agent: ComposedAgent;
  let baseUrl: string;
  let identities: TestIdentities;
  const opened: ClientFactory[] = [];

  beforeEach(async () => {
    identities = await testIdentities();
    tasks = new FakeTasks();
    workdirRoot = await scratchDir("server");
    // Under the defaults: mTLS and the contracts' access policy, with the test's identities.
    const config = loadConfig({
      ...identities.env,
      AGENT_ID: "worker-7",
      AGENT_CONCURRENCY: "3",
      AGENT_RUNNER: "command",
      AGENT_COMMAND: 'eval "$HOOKMESH_PROMPT"',
      AGENT_KILL_GRACE_MS: "300",
      AGENT_MAX_RUN_TIME_MS: "60000",
      AGENT_WORKDIR: workdirRoot,
      SHUTDOWN_GRACE_MS: "300",
    });
    // The one injected difference: the tasks service is a WorkerService fake, in memory.
    agent = composeAgent(config, {
      logger: memoryLogger("agent-server-test").logger,
      env: { PATH: process.env.PATH },
      clients: routerClientFactory((router) => tasks.routes(router)),
    });
    const { port } = await agent.server.listen(0, "127.0.0.1");
    baseUrl = `https://127.0.0.1:${port}`;
    agent.start();
  });

  afterEach(async () => {
    for (const clients of opened.splice(0)) clients.close();
    await agent.close();
    await rm(workdirRoot, { recursive: true, force: true });
  });

  /** Clients of the agent's port calling as `identity`. */
  function as(identity: string) {
    const clients = identities.clients(identity, { retry: { maxAttempts: 1 } });
    opened.push(clients);
    return { agent: clients.client(AgentService, baseUrl, "agent"), health: clients.client(Health, baseUrl, "agent") };
  }

  it("lists the runs in progress over gRPC", async () => {
    tasks.add("t1", `echo '{"hookmesh": 1, "cost_usd": 0.5}'; sleep 30`);
    const client = as("operator").agent;
    await waitFor(() => agent.pool.status().runs[0]?.costUsd === 0.5);
    const res = await client.listRuns({});
    expect(res).toMatchObject({ workerId: "worker-7", concurrency: 3, draining: false });
    expect(res.runs).toHaveLength(1);
    expect(res.runs[0]).toMatchObject({ taskId: "t1", attempt: 1, runner: "command", costUsd: 0.5 });
    expect(res.runs[0]!.pid).toBeGreaterThan(0);
    expect(Date.now() - timestampMs(res.runs[0]!.startTime!)).toBeLessThan(10_000);
  });

  it("drains on Drain: health goes NOT_SERVING at once, the run is failed as retryable after the grace", async () => {
    tasks.add("t1", "sleep 30");
    const { agent: client, health } = as("operator");
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    await waitFor(() => agent.pool.status().runs.length === 1);

    expect(await client.drain({})).toMatchObject({ runsInProgress: 1 });
    expect((await health.check({ service: AgentService.typeName })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await client.listRuns({})).draining).toBe(true);
    expect(await client.drain({})).toMatchObject({ runsInProgress: 1 });

    await waitFor(() => tasks.ended() === 1);
    expect(tasks.failed[0]).toMatchObject({ result: { outcome: RunOutcome.WORKER_SHUTDOWN }, retryable: true });
    expect((await client.listRuns({})).runs).toEqual([]);
  });

  it("lets only the identities the contract names call it: the operator's and the dashboard's", async () => {
    expect(await as("dashboard").agent.listRuns({})).toMatchObject({ workerId: "worker-7" });
    expect((await callError(as("gateway").agent.listRuns({}))).code).toBe(Code.PermissionDenied);
    expect((await callError(as("gateway").agent.drain({}))).code).toBe(Code.PermissionDenied);
    expect(agent.pool.status().draining).toBe(false);
  });

  it("answers health to a caller without a certificate, and nothing else", async () => {
    const anonymous = createGrpcTransport({
      baseUrl,
      nodeOptions: { ca: readFileSync(join(identities.home, "tls", "ca.crt")) },
    });
    expect((await createClient(Health, anonymous).check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await callError(createClient(AgentService, anonymous).drain({}))).code).toBe(Code.Unauthenticated);
    expect(agent.pool.status().draining).toBe(false);
  });
});
