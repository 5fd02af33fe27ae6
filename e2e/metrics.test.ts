/**
 * Metrics: after a known sequence of webhooks, the gateway's counters say exactly what
 * happened, `/metrics` on its admin port parses as the Prometheus text format, and the breaker
 * of its client to the tasks service shows opening and closing again.
 *
 * The sequence: one delivery accepted (a task to run), the same delivery again (a duplicate),
 * one with a forged signature (rejected), then the tasks service stopped: deliveries go to the
 * outbox (queued), which the outbox gauges show, the breaker opens, and when tasks is back the
 * outbox drains and the breaker closes.
 */
import { randomUUID } from "node:crypto";
import { exampleOf, type RunningGateway, startGateway, TEST_SECRETS } from "@hookmesh/gateway/testing";
import { type AdminServer, createLogger, startAdminServer } from "@hookmesh/kit";
import { metricValue, parsePrometheusText, signGitHub, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";

const logger = createLogger({ service: "metrics-e2e", level: "silent" });
/** Deliveries sent while the tasks service is down: enough failed submissions to open the breaker (10 calls). */
const QUEUED = 6;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

/** A new issue comment that mentions hookmesh, by the repository's owner: the default GitHub rule makes it a task. */
function mentionBody(deliveryId: string): Buffer {
  const payload = exampleOf("issue_comment", "created") as { comment: Record<string, unknown> };
  payload.comment.body = `@hookmesh look at this (${deliveryId})`;
  payload.comment.author_association = "OWNER";
  return Buffer.from(JSON.stringify(payload));
}

async function deliver(gateway: RunningGateway, deliveryId: string, options: { forged?: boolean } = {}) {
  const body = mentionBody(deliveryId);
  const res = await fetch(`${gateway.base}/webhooks/github`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "issue_comment",
      "x-github-delivery": deliveryId,
      "x-hub-signature-256": signGitHub(body, options.forged ? "not-the-secret" : TEST_SECRETS.github),
    },
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function scrape(admin: AdminServer) {
  const res = await fetch(`${admin.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

describe("metrics", () => {
  it("count queued, duplicate and forged deliveries exactly, and show the outbox and the forwarder's submissions", {
    timeout: 60_000,
  }, async () => {
    const db: TestRedis = await testRedis("metrics-e2e");
    cleanups.push(() => db.cleanup());
    let tasks: RunningTasks = await startTasks(db, logger);
    cleanups.push(() => tasks.close());
    const gateway = await startGateway(db, tasks.url, logger);
    cleanups.push(() => gateway.close());
    const admin = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      health: gateway.server.grpc.health,
      registry: gateway.metrics.registry,
      logger,
    });
    cleanups.push(() => admin.close());
    const tasksAdmin = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      health: tasks.server.health,
      registry: tasks.metrics.registry,
      logger,
    });
    cleanups.push(() => tasksAdmin.close());
    expect((await fetch(`${admin.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${admin.url}/livez`)).status).toBe(200);

    const first = `accepted-${randomUUID()}`;
    expect(await deliver(gateway, first)).toMatchObject({ status: 202, body: { duplicate: false, queued: true } });
    // Made a task behind the answer, by the forwarder's SubmitEvents.
    await gateway.forwarded();
    expect(await deliver(gateway, first)).toMatchObject({ status: 202, body: { duplicate: true } });
    expect((await deliver(gateway, `forged-${randomUUID()}`, { forged: true })).status).toBe(401);

    const taskSide = await scrape(tasksAdmin);
    expect(metricValue(taskSide, "hookmesh_tasks_submitted_total", { outcome: "queued", service: "tasks" })).toBe(1);
    expect(metricValue(taskSide, "hookmesh_tasks", { state: "queued" })).toBe(1);
    expect(metricValue(taskSide, "hookmesh_tasks_queue_depth", { state: "ready", priority: "100" })).toBe(1);
    const served = { rpc_service: TaskService.typeName, rpc_method: "SubmitEvents", code: "OK" };
    expect(metricValue(taskSide, "hookmesh_rpc_server_handled_total", served)).toBe(1);

    // The tasks service stops: deliveries wait in the outbox, and the forwarder's submissions fail.
    const port = tasks.port;
    await tasks.close();
    for (let i = 0; i < QUEUED; i++) {
      expect(await deliver(gateway, `queued-${i}-${randomUUID()}`)).toMatchObject({
        status: 202,
        body: { queued: true },
      });
    }
    const submit = { downstream: tasks.url, rpc_service: TaskService.typeName, rpc_method: "SubmitEvents" };
    await vi.waitFor(
      async () =>
        expect(
          metricValue(await scrape(admin), "hookmesh_rpc_client_handled_total", { ...submit, code: "Unavailable" }),
        ).toBeGreaterThan(0),
      { timeout: 10_000, interval: 100 },
    );
    const down = await scrape(admin);
    const deliveries = (labels: Record<string, string>) =>
      metricValue(down, "hookmesh_gateway_deliveries_total", { provider: "github", ...labels });
    expect(deliveries({ outcome: "queued" })).toBe(1 + QUEUED);
    expect(deliveries({ outcome: "duplicate" })).toBe(1);
    expect(deliveries({ outcome: "rejected", reason: "signature" })).toBe(1);
    expect(deliveries({})).toBe(3 + QUEUED);
    expect(metricValue(down, "hookmesh_gateway_outbox_length")).toBe(QUEUED);
    expect(metricValue(down, "hookmesh_gateway_outbox_oldest_age_seconds")).toBeGreaterThan(0);
    expect(metricValue(down, "hookmesh_rpc_client_handled_total", { ...submit, code: "OK" })).toBe(1);

    // Tasks is back on its port: the outbox drains through a closed breaker.
    tasks = await startTasks(db, logger, { port });
    await vi.waitFor(
      async () => {
        const up = await scrape(admin);
        expect(metricValue(up, "hookmesh_gateway_outbox_length")).toBe(0);
        expect(metricValue(up, "hookmesh_circuit_breaker_state", { ...submit, state: "closed" })).toBe(1);
      },
      { timeout: 20_000, interval: 200 },
    );
    const up = await scrape(admin);
    expect(metricValue(up, "hookmesh_gateway_outbox_oldest_age_seconds")).toBe(0);
    // Forwarding from the outbox is no new delivery: the counters still say what arrived.
    expect(metricValue(up, "hookmesh_gateway_deliveries_total", { outcome: "queued" })).toBe(1 + QUEUED);
  });
});
