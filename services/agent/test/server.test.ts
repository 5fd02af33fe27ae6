import { rm } from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { HealthState, ServingStatus, type MeshServer } from "@hookmesh/kit";
import { memoryLogger } from "@hookmesh/kit/testing";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { AgentService } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import { RunOutcome } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { WorkerPool } from "../src/pool.js";
import { createRunners } from "../src/runners/index.js";
import { build } from "../src/server.js";
import { FakeTasks } from "./fake-tasks.js";
import { scratchDir, settings, waitFor } from "./helpers.js";

describe("agent server", () => {
  let tasks: FakeTasks;
  let workdirRoot: string;
  let pool: WorkerPool;
  let server: MeshServer;
  let baseUrl: string;

  beforeEach(async () => {
    tasks = new FakeTasks();
    workdirRoot = await scratchDir("server");
    const { logger } = memoryLogger("agent-server-test");
    const health = new HealthState([AgentService.typeName]);
    pool = new WorkerPool({
      worker: tasks.client,
      runners: createRunners(settings({ agentCommand: 'eval "$HOOKMESH_PROMPT"', killGraceMs: 300 })),
      config: { workerId: "worker-7", concurrency: 3, defaultRunner: "command", maxRunTimeMs: 60_000, workdirRoot, workerEnv: { PATH: process.env.PATH }, leaseWaitMs: 200 },
      logger,
      onDrain: () => health.setAll(ServingStatus.NOT_SERVING),
    });
    server = build({ pool, health, drainGraceMs: 300, logger });
    const { port } = await server.listen(0, "127.0.0.1");
    baseUrl = `http://127.0.0.1:${port}`;
    pool.start();
    health.setAll(ServingStatus.SERVING);
  });

  afterEach(async () => {
    await pool.drain(0);
    await server.close(0);
    await rm(workdirRoot, { recursive: true, force: true });
  });

  it("lists the runs in progress over gRPC", async () => {
    tasks.add("t1", `echo '{"hookmesh": 1, "cost_usd": 0.5}'; sleep 30`);
    const agent = createClient(AgentService, createGrpcTransport({ baseUrl }));
    await waitFor(() => pool.status().runs[0]?.costUsd === 0.5);
    const res = await agent.listRuns({});
    expect(res).toMatchObject({ workerId: "worker-7", concurrency: 3, draining: false });
    expect(res.runs).toHaveLength(1);
    expect(res.runs[0]).toMatchObject({ taskId: "t1", attempt: 1, runner: "command", costUsd: 0.5 });
    expect(res.runs[0]!.pid).toBeGreaterThan(0);
    expect(Date.now() - timestampMs(res.runs[0]!.startTime!)).toBeLessThan(10_000);
  });

  it("drains on Drain: health goes NOT_SERVING at once, the run is failed as retryable after the grace", async () => {
    tasks.add("t1", "sleep 30");
    const transport = createGrpcTransport({ baseUrl });
    const agent = createClient(AgentService, transport);
    const health = createClient(Health, transport);
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    await waitFor(() => pool.status().runs.length === 1);

    expect(await agent.drain({})).toMatchObject({ runsInProgress: 1 });
    expect((await health.check({ service: AgentService.typeName })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await agent.listRuns({})).draining).toBe(true);
    expect(await agent.drain({})).toMatchObject({ runsInProgress: 1 });

    await waitFor(() => tasks.ended() === 1);
    expect(tasks.failed[0]).toMatchObject({ result: { outcome: RunOutcome.WORKER_SHUTDOWN }, retryable: true });
    expect((await agent.listRuns({})).runs).toEqual([]);
  });
});
