import * as http from "node:http";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { DashboardService } from "../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { TaskStage, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type Database, openDatabase } from "../src/db.js";
import { Notifier } from "../src/notifier.js";
import { routes } from "../src/routes.js";
import { SignIns } from "../src/sign-in.js";
import { CONTENT_SECURITY_POLICY } from "../src/web.js";
import { type TestDatabase, testDatabase } from "./databases.js";
import { outputEvent, stageEvent, T0, task } from "./fixtures.js";
import { FakeMesh, type Harness, route, startDashboard } from "./helpers.js";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? "GET", headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("DashboardService over createRouterTransport", () => {
  let t: TestDatabase;
  let mesh: FakeMesh;
  let client: ReturnType<typeof createClient<typeof DashboardService>>;
  beforeAll(async () => {
    t = await testDatabase("postgres");
  });
  afterAll(() => t?.close());
  beforeEach(async () => {
    await t.reset();
    mesh = new FakeMesh();
    const transport = createRouterTransport(
      routes({
        db: t.db,
        notifier: new Notifier(),
        signIns: new SignIns(t.db, { signInTtlMs: 60_000, sessionTtlMs: 60_000 }),
        clients: mesh.clients(),
        logger: memoryLogger().logger,
        tasksUrl: "http://tasks",
        gatewayUrl: "http://gateway",
        agents: [
          { kind: "url", origin: "http://agent-a" },
          { kind: "url", origin: "http://agent-b" },
          { kind: "dns", host: "agents.example", port: 50052, protocol: "http:" },
          { kind: "dns", host: "gone.example", port: 50052, protocol: "http:" },
        ],
        // The headless name's two replicas, as DNS would answer; the other name is unknown.
        lookup: async (host) => {
          if (host === "agents.example") return ["10.0.0.7", "10.0.0.8"];
          throw new Error("ENOTFOUND");
        },
        services: [
          { name: "tasks", url: "http://tasks" },
          { name: "gateway", url: "http://gateway" },
        ],
        site: { publicUrl: "http://127.0.0.1:8070" },
        traceUrlTemplate: "http://jaeger:16686/trace/{trace_id}",
        now: () => T0,
      }),
    );
    client = createClient(DashboardService, transport);
  });

  it("lists tasks with a page token tied to its filters", async () => {
    const { upsertTask } = await import("../src/read-model.js");
    for (const id of ["a1", "a2", "a3"]) await upsertTask(t.db, task({ id, routeId: "r1" }));
    const first = await client.listTasks({ pageSize: 2, routeId: "r1" });
    expect(first.tasks.map((x) => x.id)).toEqual(["a3", "a2"]);
    expect(first.totalSize).toBe(3n);
    const second = await client.listTasks({ pageSize: 2, routeId: "r1", pageToken: first.nextPageToken });
    expect(second.tasks.map((x) => x.id)).toEqual(["a1"]);
    expect(second.nextPageToken).toBe("");
    await expect(client.listTasks({ pageSize: 2, pageToken: first.nextPageToken })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    await expect(client.listTasks({ pageToken: "garbage" })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("gets a task with its timeline and trace link, NOT_FOUND otherwise", async () => {
    const { upsertTask, insertEvent } = await import("../src/read-model.js");
    await upsertTask(t.db, task({ id: "t1", traceId: "4bf92f3577b34da6a3ce929d0e0e4736" }));
    await insertEvent(t.db, "t1", stageEvent("e1", TaskStage.QUEUED, T0));
    const res = await client.getTask({ id: "t1" });
    expect(res.events.map((e) => e.id)).toEqual(["e1"]);
    expect(res.traceUrl).toBe("http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    await expect(client.getTask({ id: "nope" })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(client.watchTask({ id: "nope" })[Symbol.asyncIterator]().next()).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });

  it("refuses an analytics range that ends before it starts or has too many buckets", async () => {
    await expect(
      client.getAnalytics({ startTime: { seconds: 100n }, endTime: { seconds: 50n } }),
    ).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(
      client.getAnalytics({ startTime: { seconds: 0n }, endTime: { seconds: 100_000n }, bucket: { seconds: 1n } }),
    ).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("forwards actions, passes the owner's errors through and records each with its outcome", async () => {
    mesh.tasks.tasks.set("t1", task({ id: "t1", state: TaskState.FAILED }));
    expect((await client.retryTask({ id: "t1" })).task?.id).toBe("t1");
    await expect(client.cancelTask({ id: "gone" })).rejects.toMatchObject({ code: Code.NotFound });
    const invalid = await client.upsertRoute({ route: route("Not Valid") }).catch((err: unknown) => err);
    expect(invalid).toBeInstanceOf(ConnectError);
    expect(invalid).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "route.id: letters, digits, - and _ only",
    });
    await client.upsertRoute({ route: route("github-mention") });
    expect((await client.listRoutes({})).routes.map((r) => r.id)).toEqual(["github-mention"]);
    await client.deleteRoute({ id: "github-mention" });
    const redelivered = await client.redeliver({ id: "del-1" });
    expect(redelivered.delivery?.rawBody.length).toBe(0);
    const listed = await client.listDeliveries({});
    expect(listed.deliveries.map((d) => [d.id, d.rawBody.length])).toEqual([["del-1", 0]]);
    expect(mesh.tasks.actions).toEqual(["retry t1", "cancel gone"]);

    const audit = await client.listAuditEntries({});
    expect(audit.entries.map((e) => [e.action, e.target, e.outcome])).toEqual([
      ["Redeliver", "del-1", "OK"],
      ["DeleteRoute", "github-mention", "OK"],
      ["UpsertRoute", "github-mention", "OK"],
      ["UpsertRoute", "Not Valid", "INVALID_ARGUMENT"],
      ["CancelTask", "gone", "NOT_FOUND"],
      ["RetryTask", "t1", "OK"],
    ]);
    expect(audit.entries[3]?.detail).toBe("route.id: letters, digits, - and _ only");
  });

  it("lists workers, drains one by id, and reports health and breakers", async () => {
    const { workers } = await client.listWorkers({});
    expect(workers.map((w) => [w.id, w.url, w.runs.length])).toEqual([
      ["worker-1", "http://agent-a", 1],
      ["worker-1", "http://agent-b", 1],
      ["worker-1", "http://10.0.0.7:50052", 1],
      ["worker-1", "http://10.0.0.8:50052", 1],
      ["dns:///gone.example:50052", "dns:///gone.example:50052", 0],
    ]);
    expect(workers.at(-1)?.error).toBe("cannot resolve gone.example: ENOTFOUND");
    expect((await client.drainWorker({ id: "worker-1" })).runsInProgress).toBe(1);
    expect(mesh.drained).toBe(true);
    await expect(client.drainWorker({ id: "worker-9" })).rejects.toMatchObject({ code: Code.NotFound });
    mesh.tasksHealthy = false;
    const health = await client.getMeshHealth({});
    expect(health.services.map((s) => [s.name, s.status])).toEqual([
      ["tasks", "NOT_SERVING"],
      ["gateway", "NOT_SERVING"],
    ]);
  });
});

describe("the dashboard's servers", () => {
  let t: TestDatabase;
  let h: Harness;
  beforeAll(async () => {
    t = await testDatabase("postgres");
  });
  afterAll(() => t?.close());
  beforeEach(async () => {
    await t.reset();
    h = await startDashboard(t.db);
  });
  afterEach(() => h?.close());

  const api = (method: string, body: unknown, headers: Record<string, string> = {}) =>
    request(`${h.webUrl}/api/hookmesh.dashboard.v1.DashboardService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: h.webUrl, ...headers },
      body: JSON.stringify(body),
    });

  /** Signs in through the link the gRPC port issues; returns the Cookie header to send. */
  async function signIn(name = "ana"): Promise<string> {
    const grpc = createClient(DashboardService, createGrpcTransport({ baseUrl: h.grpcUrl }));
    const { url } = await grpc.createSignInLink({ name });
    expect(url.startsWith(`${h.webUrl}/login?token=`)).toBe(true);
    const res = await request(url);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe("/");
    const cookie = res.headers["set-cookie"]?.[0] ?? "";
    expect(cookie).toMatch(/^hookmesh_session=[\w-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200$/);
    const again = await request(url);
    expect(again).toMatchObject({ status: 303, headers: { location: "/login?error=expired" } });
    return cookie.split(";")[0]!;
  }

  it("serves the UI's files with their types, the SPA's routes as index.html, and a strict CSP", async () => {
    const page = await request(`${h.webUrl}/tasks/01JTASK`);
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toBe(CONTENT_SECURITY_POLICY);
    expect(page.headers["cache-control"]).toBe("no-cache");
    expect(page.body).toContain("<title>hookmesh</title>");
    expect((await request(`${h.webUrl}/login`)).body).toContain("<title>hookmesh</title>");
    const js = await request(`${h.webUrl}/assets/app-1a2b.js`);
    expect(js.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(js.headers["cache-control"]).toContain("immutable");
    expect((await request(`${h.webUrl}/assets/app-1a2b.css`)).headers["content-type"]).toBe("text/css; charset=utf-8");
    expect((await request(`${h.webUrl}/assets/missing.js`)).status).toBe(404);
    expect((await request(`${h.webUrl}/..%2f..%2fetc%2fpasswd.txt`)).status).toBe(404);
    expect((await request(`${h.webUrl}/`, { headers: { host: "rebound.example" } })).status).toBe(421);
    expect((await request(`${h.webUrl}/tasks/x`, { method: "POST" })).status).toBe(405);
  });

  it("refuses the browser API without a session, from another origin, and after sign-out", async () => {
    expect(await api("ListTasks", {})).toMatchObject({ status: 401 });
    const cookie = await signIn();
    expect((await api("ListTasks", {}, { cookie })).status).toBe(200);
    expect(await api("ListTasks", {}, { cookie, origin: "http://evil.example" })).toMatchObject({ status: 403 });
    const noOrigin = await request(`${h.webUrl}/api/hookmesh.dashboard.v1.DashboardService/ListTasks`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie },
      body: "{}",
    });
    expect(noOrigin.status).toBe(403);
    expect(JSON.parse((await api("CreateSignInLink", {}, { cookie })).body)).toMatchObject({
      code: "permission_denied",
    });
    expect(
      (await request(`${h.webUrl}/logout`, { method: "POST", headers: { cookie, origin: "http://evil.example" } }))
        .status,
    ).toBe(403);
    const out = await request(`${h.webUrl}/logout`, { method: "POST", headers: { cookie, origin: h.webUrl } });
    expect(out.status).toBe(204);
    expect(out.headers["set-cookie"]?.[0]).toContain("Max-Age=0");
    expect((await api("ListTasks", {}, { cookie })).status).toBe(401);
  });

  it("records a browser's actions under the name it signed in with", async () => {
    h.mesh.tasks.tasks.set("t1", task({ id: "t1", state: TaskState.DEAD }));
    const cookie = await signIn("ana");
    expect((await api("RetryTask", { id: "t1" }, { cookie })).status).toBe(200);
    const audit = JSON.parse((await api("ListAuditEntries", {}, { cookie })).body);
    expect(audit.entries[0]).toMatchObject({ action: "RetryTask", target: "t1", outcome: "OK" });
    expect(audit.entries[0].actor).toMatch(/^operator "ana" \(signed in \d{4}-\d\d-\d\dT[\d:.]+Z\)$/);
  });

  it("shows a browser the owning service's error as the Connect protocol's, code and message", async () => {
    const cookie = await signIn();
    const refused = await api("UpsertRoute", { route: { id: "Not Valid", provider: "PROVIDER_GITHUB" } }, { cookie });
    expect(refused.status).toBe(400);
    expect(refused.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(refused.body)).toEqual({
      code: "invalid_argument",
      message: "route.id: letters, digits, - and _ only",
    });
    const missing = await api("DeleteRoute", { id: "nope" }, { cookie });
    expect(JSON.parse(missing.body)).toEqual({ code: "not_found", message: "no route nope" });
  });

  it("streams a task's timeline to a browser as the projector applies it, and ends with the task", async () => {
    const { tasks } = h.mesh;
    tasks.change("t1", stageEvent("e1", TaskStage.QUEUED, T0), task({ id: "t1", updateMs: T0 }));
    await vi.waitFor(() => h.dashboard.db.query("SELECT 1 FROM tasks").then((rows) => expect(rows).toHaveLength(1)), {
      timeout: 10_000,
    });
    const cookie = await signIn();
    const browser: Interceptor = (next) => (req) => {
      req.header.set("cookie", cookie);
      req.header.set("origin", h.webUrl);
      return next(req);
    };
    const client = createClient(
      DashboardService,
      createConnectTransport({ baseUrl: `${h.webUrl}/api`, httpVersion: "1.1", interceptors: [browser] }),
    );
    const seen: string[] = [];
    const watching = (async () => {
      for await (const res of client.watchTask({ id: "t1" })) {
        seen.push(`${res.event?.id}${res.task ? `:${TaskState[res.task.state]}` : ""}`);
      }
    })();
    await vi.waitFor(() => expect(seen).toEqual(["e1:QUEUED"]), { timeout: 10_000 });
    tasks.change(
      "t1",
      stageEvent("e2", TaskStage.STARTED, T0 + 1000, 1),
      task({ id: "t1", state: TaskState.RUNNING, updateMs: T0 + 1000 }),
    );
    tasks.change("t1", outputEvent("e3", "thinking", T0 + 1100));
    await vi.waitFor(() => expect(seen).toEqual(["e1:QUEUED", "e2:RUNNING", "e3"]), { timeout: 10_000 });
    tasks.change(
      "t1",
      stageEvent("e4", TaskStage.COMPLETED, T0 + 2000, 1),
      task({ id: "t1", state: TaskState.SUCCEEDED, updateMs: T0 + 2000 }),
    );
    await watching;
    expect(seen).toEqual(["e1:QUEUED", "e2:RUNNING", "e3", "e4:SUCCEEDED"]);
    const resumed: string[] = [];
    for await (const res of client.watchTask({ id: "t1", afterEventId: "e2" })) resumed.push(res.event?.id ?? "");
    expect(resumed).toEqual(["e3", "e4"]);
  });

  it("serves DashboardService on the gRPC port", async () => {
    const grpc = createClient(DashboardService, createGrpcTransport({ baseUrl: h.grpcUrl }));
    expect((await grpc.listTasks({})).tasks).toEqual([]);
    await expect(grpc.createSignInLink({ name: "\u0007bell" })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });
});

describe("two replicas on one PostgreSQL database", () => {
  let t: TestDatabase;
  let second: Database;
  const replicas: Harness[] = [];
  beforeAll(async () => {
    t = await testDatabase("postgres");
    second = await openDatabase(t.config, { schema: t.schema! });
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await second?.close();
    await t?.close();
  });

  it("projects on one, and a watch on the other follows through LISTEN/NOTIFY", async () => {
    const mesh = new FakeMesh();
    const a = await startDashboard(t.db, {}, mesh);
    replicas.push(a);
    mesh.tasks.change("t1", stageEvent("e1", TaskStage.QUEUED, T0), task({ id: "t1", updateMs: T0 }));
    await vi.waitFor(async () => expect(await t.db.query("SELECT 1 FROM tasks")).toHaveLength(1), { timeout: 10_000 });
    const b = await startDashboard(second, {}, mesh);
    replicas.push(b);
    const client = createClient(DashboardService, createGrpcTransport({ baseUrl: b.grpcUrl }));
    const seen: string[] = [];
    const watching = (async () => {
      for await (const res of client.watchTask({ id: "t1" })) seen.push(res.event?.id ?? "");
    })();
    await vi.waitFor(() => expect(seen).toEqual(["e1"]), { timeout: 10_000 });
    // The watch polls every 10s in these tests: an event within a second came through NOTIFY.
    mesh.tasks.change("t1", outputEvent("e2", "working", T0 + 500));
    await vi.waitFor(() => expect(seen).toEqual(["e1", "e2"]), { timeout: 1_000 });
    mesh.tasks.change(
      "t1",
      stageEvent("e3", TaskStage.CANCELED, T0 + 900, 1),
      task({ id: "t1", state: TaskState.CANCELED, updateMs: T0 + 900 }),
    );
    await watching;
    expect(seen).toEqual(["e1", "e2", "e3"]);
    // One stream of changes: replica A's.
    expect(mesh.tasks.cursorsAsked).toEqual([""]);
  });
});
