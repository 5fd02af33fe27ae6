import { randomUUID } from "node:crypto";
import * as http from "node:http";
import * as net from "node:net";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  exampleOf,
  examplesOf,
  forwardedAt,
  type Payload,
  type RunningGateway,
  startGateway,
} from "@hookmesh/gateway/testing";
import { createLogger, type Env, startTracing, type Tracing } from "@hookmesh/kit";
import { memoryLogger, signGitHub, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { type Task, TaskState, TaskView } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";

const SECRET = "gw-test-secret-7c1e5b0a9d";
const OLD_SECRET = "gw-test-old-secret-44f2";
const MAX_BODY_BYTES = 64 * 1024;
const RETRY_AFTER_SECONDS = 7;
const HOOK_ID = "109948940";

/** Every signature made with a configured secret: none may ever appear in a log line. */
const signatures = new Set<string>();

function sign(body: Buffer | string, secret = SECRET): string {
  const signature = signGitHub(body, secret);
  if (secret === SECRET || secret === OLD_SECRET) signatures.add(signature);
  return signature;
}

/** The gateway's configuration here: these GitHub secrets, a small body limit, a known Retry-After. */
function settings(githubSecrets: string[]): Env {
  return {
    GITHUB_WEBHOOK_SECRET: githubSecrets.join(","),
    GITHUB_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    GATEWAY_RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
  };
}

/** The gateway and the real tasks service it feeds, each as production composes it, on real Redis. */
class Mesh {
  db!: TestRedis;
  /** The real tasks service; stopped and started again on its port by the outbox tests. */
  tasks!: RunningTasks;
  gateway!: RunningGateway;
  /** The gateway's HTTP base URL. */
  base!: string;
  log = memoryLogger("gateway");
  /** An independent client of the tasks service, for reading what the gateway created. */
  reader!: Client<typeof TaskService>;
  private readonly tasksLogger = createLogger({ service: "tasks", level: "silent" });
  private readerSessions!: Http2SessionManager;
  private tasksRunning = false;
  private readonly extraGateways: RunningGateway[] = [];

  async start(): Promise<this> {
    this.db = await testRedis("gateway-github");
    this.tasks = await startTasks(this.db, this.tasksLogger);
    this.tasksRunning = true;
    this.readerSessions = new Http2SessionManager(this.tasks.url);
    this.reader = createClient(
      TaskService,
      createGrpcTransport({ baseUrl: this.tasks.url, sessionManager: this.readerSessions }),
    );
    this.gateway = await startGateway(this.db, this.tasks.url, this.log.logger, settings([SECRET]));
    this.base = this.gateway.base;
    return this;
  }

  /** Another gateway over the same Redis and tasks service, closed with the mesh. */
  async startExtraGateway(githubSecrets: string[]): Promise<string> {
    const gateway = await startGateway(this.db, this.tasks.url, this.log.logger, settings(githubSecrets));
    this.extraGateways.push(gateway);
    return gateway.base;
  }

  async stopTasks(): Promise<void> {
    if (!this.tasksRunning) return;
    this.tasksRunning = false;
    await this.tasks.close();
  }

  /** Starts the tasks service again on the port the gateway knows. */
  async restartTasks(): Promise<void> {
    this.tasks = await startTasks(this.db, this.tasksLogger, { port: this.tasks.port });
    this.tasksRunning = true;
  }

  async stop(): Promise<void> {
    await Promise.all([this.gateway?.close(), ...this.extraGateways.map((g) => g.close())]);
    this.readerSessions?.abort();
    if (this.tasks) await this.stopTasks();
    await this.db?.cleanup();
  }

  /** Every GitHub task with its raw body, which ListTasks leaves out and GetTask gives. */
  async listTasks(): Promise<Task[]> {
    const res = await this.reader.listTasks({ pageSize: 500, provider: Provider.GITHUB });
    return Promise.all(res.tasks.map((task) => this.getTask(task.id)));
  }

  async getTask(id: string): Promise<Task> {
    const res = await this.reader.getTask({ id, view: TaskView.FULL });
    if (!res.task) throw new Error(`no task ${id}`);
    return res.task;
  }

  /** The parsed log lines with message `msg`. */
  logLines(msg: string): Array<Record<string, unknown>> {
    return this.log
      .lines()
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === msg);
  }
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown>;
}

interface DeliveryOptions {
  event?: string | null;
  delivery?: string | null;
  /** Explicit header value; null leaves the header out. Default: signed with SECRET. */
  signature?: string | null;
  contentType?: string;
  hookId?: string;
  headers?: Record<string, string>;
}

async function post(base: string, body: Buffer | string, options: DeliveryOptions = {}): Promise<Reply> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const headers: Record<string, string> = {
    "content-type": options.contentType ?? "application/json",
    "x-github-hook-id": options.hookId ?? HOOK_ID,
    "user-agent": "GitHub-Hookshot/044aadd",
    ...options.headers,
  };
  if (options.event !== null) headers["x-github-event"] = options.event ?? "issue_comment";
  if (options.delivery !== null) headers["x-github-delivery"] = options.delivery ?? randomUUID();
  const signature = options.signature === undefined ? sign(bytes) : options.signature;
  if (signature !== null) headers["x-hub-signature-256"] = signature;
  const res = await reply(await fetch(`${base}/webhooks/github`, { method: "POST", headers, body: bytes }));
  // Looked at once the gateway's forwarder has made the task, behind the acknowledgment.
  if (res.json.queued === true) await forwardedAt(base);
  return res;
}

async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Left empty; expectError fails on it.
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** An error answer: the status, and a JSON body that is exactly {error: string}, no stack. */
function expectError(res: Reply, status: number): void {
  expect({ status: res.status, body: res.text }).toMatchObject({ status });
  expect(res.headers.get("content-type")).toBe("application/json");
  expect(Object.keys(res.json)).toEqual(["error"]);
  expect(typeof res.json.error).toBe("string");
  expect(res.json.error).not.toBe("");
  expect(res.text).not.toMatch(/\bat .+:\d+:\d+|node:internal|\.ts\b|Error:/);
}

/** The status line the server answers a raw HTTP/1.1 request with. */
function rawStatus(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    let received = "";
    socket.setTimeout(5_000, () => socket.destroy(new Error("no answer")));
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    socket.on("error", reject);
    socket.on("close", () => resolve(received.split("\r\n")[0] ?? ""));
  });
}

/** A compact JSON body, as GitHub sends it. */
function jsonBody(payload: Payload): Buffer {
  return Buffer.from(JSON.stringify(payload));
}

/** POST with chunked transfer encoding (no Content-Length), through node:http. */
function postChunked(
  url: string,
  headers: Record<string, string>,
  chunks: Buffer[],
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url, { method: "POST", headers, agent: false }, (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on("data", (chunk: Buffer) => parts.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      res.on("error", reject);
    });
    // Once the answer is in, the server may stop reading the rest of the upload.
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    const write = (i: number) => {
      if (i === chunks.length) return void req.end();
      if (req.destroyed) return;
      req.write(chunks[i], () => setImmediate(() => write(i + 1)));
    };
    write(0);
  });
}

describe("POST /webhooks/github, through the real tasks service", () => {
  let mesh: Mesh;
  let tracing: Tracing;

  // The process's tracing, as runMain sets it up for a service: without an exporter, the
  // context (a caller's traceparent) propagates.
  beforeAll(() => {
    tracing = startTracing("e2e", {});
  });

  afterAll(() => tracing.shutdown());

  beforeEach(async () => {
    mesh = await new Mesh().start();
  });

  afterEach(async () => {
    await mesh.stop();
    const log = mesh.log.lines().join("\n");
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain(OLD_SECRET);
    for (const signature of signatures) {
      expect(log).not.toContain(signature.slice("sha256=".length));
    }
  });

  describe.each(["issue_comment", "issues", "pull_request", "pull_request_review", "push"])("%s", (eventType) => {
    it("every example payload becomes one task carrying the delivery byte for byte", async () => {
      const payloads = examplesOf(eventType);
      const sent = payloads.map((payload) => ({ payload, body: jsonBody(payload), delivery: randomUUID() }));
      const replies = await Promise.all(
        sent.map((s) => post(mesh.base, s.body, { event: eventType, delivery: s.delivery })),
      );

      for (const res of replies) {
        expect({ status: res.status, body: res.json }).toMatchObject({ status: 202, body: { duplicate: false } });
        expect(res.json.task_id).toEqual(expect.any(String));
        expect(res.headers.get("content-type")).toBe("application/json");
      }
      const ids = replies.map((r) => r.json.task_id as string);
      expect(new Set(ids).size).toBe(sent.length);

      for (const [i, s] of sent.entries()) {
        const task = await mesh.getTask(ids[i]!);
        const event = task.event!;
        // Whether the default rules queue it or record it as ignored, it is a task either way.
        expect([TaskState.QUEUED, TaskState.IGNORED]).toContain(task.state);
        expect(task.transitions).toHaveLength(1);
        expect(event.provider).toBe(Provider.GITHUB);
        expect(event.deliveryId).toBe(s.delivery);
        expect(event.eventType).toBe(eventType);
        expect(event.sourceId).toBe("109948940");
        expect(event.action).toBe(typeof s.payload.action === "string" ? s.payload.action : "");
        expect(event.contentType).toBe("application/json");
        expect(Buffer.from(event.rawBody).equals(s.body)).toBe(true);
        expect(event.receiveTime).toBeDefined();
        expect(event.traceContext?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
        const repository = s.payload.repository as { name: string; owner: { login: string } };
        expect(event.subject?.key).toMatch(new RegExp(`^github:${repository.owner.login}/${repository.name}(#\\d+)?$`));
      }

      const listed = await mesh.listTasks();
      expect(listed.map((t) => t.id).sort()).toEqual([...ids].sort());
      expect(listed.map((t) => t.event?.deliveryId).sort()).toEqual(sent.map((s) => s.delivery).sort());
    });
  });

  it("normalizes what it submits: an issue comment's subject, actor and text reach the task", async () => {
    const payload = exampleOf("issue_comment", "created");
    const res = await post(mesh.base, jsonBody(payload), { event: "issue_comment" });
    expect(res.status).toBe(202);
    const event = (await mesh.getTask(res.json.task_id as string)).event!;
    expect(event.subject?.key).toBe("github:Codertocat/Hello-World#1");
    expect(event.actor?.login).toBe("Codertocat");
    expect(event.actor?.association).toBe("OWNER");
    expect(event.text).toBe((payload.comment as { body: string }).body);
  });

  it("accepts a delivery signed with an older secret still configured beside the new one", async () => {
    const base = await mesh.startExtraGateway([SECRET, OLD_SECRET]);
    const body = jsonBody(exampleOf("issues", "opened"));
    const res = await post(base, body, { event: "issues", signature: sign(body, OLD_SECRET) });
    expect(res.status).toBe(202);
    expect(await mesh.listTasks()).toHaveLength(1);
  });

  it("accepts a form-encoded delivery and keeps the form body as the raw body", async () => {
    const payload = exampleOf("issue_comment", "created");
    const body = Buffer.from(new URLSearchParams({ payload: JSON.stringify(payload) }).toString());
    const res = await post(mesh.base, body, { contentType: "application/x-www-form-urlencoded" });
    expect(res.status).toBe(202);
    const event = (await mesh.getTask(res.json.task_id as string)).event!;
    expect(event.contentType).toBe("application/x-www-form-urlencoded");
    expect(Buffer.from(event.rawBody).equals(body)).toBe(true);
    expect(event.subject?.key).toBe("github:Codertocat/Hello-World#1");
    expect(event.text).toBe((payload.comment as { body: string }).body);
  });

  it("refuses a form-encoded delivery without a payload field with 400", async () => {
    const res = await post(mesh.base, "other=1", { contentType: "application/x-www-form-urlencoded" });
    expectError(res, 400);
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("accepts a JSON content type with parameters", async () => {
    const res = await post(mesh.base, jsonBody(exampleOf("push")), {
      event: "push",
      contentType: "Application/JSON; charset=utf-8",
    });
    expect(res.status).toBe(202);
  });

  it("answers a redelivery with the first task, marked duplicate, and creates no second task", async () => {
    const body = jsonBody(exampleOf("issue_comment", "created"));
    const delivery = randomUUID();
    const first = await post(mesh.base, body, { delivery });
    const second = await post(mesh.base, body, { delivery });
    expect(first.status).toBe(202);
    expect(first.json.duplicate).toBe(false);
    expect(second.status).toBe(202);
    expect(second.json).toEqual({ task_id: first.json.task_id, duplicate: true });
    const tasks = await mesh.listTasks();
    expect(tasks.map((t) => t.id)).toEqual([first.json.task_id]);
  });

  it("makes one task of concurrent copies of a delivery", async () => {
    const body = jsonBody(exampleOf("issues", "opened"));
    const delivery = randomUUID();
    const replies = await Promise.all(
      Array.from({ length: 8 }, () => post(mesh.base, body, { event: "issues", delivery })),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(8).fill(202));
    const fresh = replies.filter((r) => r.json.duplicate === false);
    expect(fresh).toHaveLength(1);
    // A copy that arrives while the first is still being submitted knows no task id yet.
    for (const r of replies) expect(["", fresh[0]!.json.task_id]).toContain(r.json.task_id);
    const tasks = await mesh.listTasks();
    expect(tasks.map((t) => t.id)).toEqual([fresh[0]!.json.task_id]);
  });

  it("scopes the delivery GUID by X-GitHub-Hook-ID: one GUID from two hooks is two tasks", async () => {
    const opened = exampleOf("issues", "opened");
    const repoBody = jsonBody(opened);
    // Another hook's delivery of another event: the replay check is on the signed body, not the GUID.
    const orgBody = jsonBody({
      ...opened,
      issue: { ...(opened.issue as Payload), updated_at: "2030-01-01T00:00:00Z" },
    });
    const delivery = randomUUID();
    const repoHook = await post(mesh.base, repoBody, { event: "issues", delivery, hookId: "1001" });
    const orgHook = await post(mesh.base, orgBody, { event: "issues", delivery, hookId: "2002" });
    expect(repoHook.json).toMatchObject({ duplicate: false });
    expect(orgHook.json).toMatchObject({ duplicate: false });
    expect(orgHook.json.task_id).not.toBe(repoHook.json.task_id);
    const again = await post(mesh.base, orgBody, { event: "issues", delivery, hookId: "2002" });
    expect(again.json).toEqual({ task_id: orgHook.json.task_id, duplicate: true });

    const tasks = await mesh.listTasks();
    expect(tasks.map((t) => t.event!.sourceId).sort()).toEqual(["1001", "2002"]);
    expect(tasks.every((t) => t.event!.deliveryId === delivery)).toBe(true);
  });

  it("answers a captured body replayed under a new GUID or hook id as a duplicate, and runs nothing new", async () => {
    const body = jsonBody(exampleOf("issues", "opened"));
    const first = await post(mesh.base, body, { event: "issues", hookId: "1001" });
    expect(first.json).toMatchObject({ duplicate: false });
    // X-GitHub-Delivery and X-GitHub-Hook-Id are not signed: a replayer can write any.
    for (const hookId of ["1001", "9999"]) {
      const replay = await post(mesh.base, body, { event: "issues", delivery: randomUUID(), hookId });
      expect([replay.status, replay.json]).toEqual([202, { task_id: first.json.task_id, duplicate: true }]);
    }
    expect(await mesh.listTasks()).toHaveLength(1);
  });

  it("keeps the caller's valid W3C traceparent", async () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const res = await post(mesh.base, jsonBody(exampleOf("push")), {
      event: "push",
      headers: { traceparent, tracestate: "vendor=1" },
    });
    const event = (await mesh.getTask(res.json.task_id as string)).event!;
    expect(event.traceContext).toMatchObject({ traceparent, tracestate: "vendor=1" });
  });

  describe("refuses unauthenticated deliveries with 401 and creates no task", () => {
    const body = () => jsonBody(exampleOf("issue_comment", "created"));

    it("a signature made with another secret", async () => {
      expectError(await post(mesh.base, body(), { signature: sign(body(), "not-the-secret") }), 401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("no signature", async () => {
      expectError(await post(mesh.base, body(), { signature: null }), 401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("a body changed by one byte after signing", async () => {
      const original = body();
      const signature = sign(original);
      const tampered = Buffer.from(original);
      const at = tampered.indexOf("Codertocat");
      tampered[at] = "K".charCodeAt(0);
      expectError(await post(mesh.base, tampered, { signature }), 401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("a valid signature of a different body", async () => {
      const signature = sign(jsonBody(exampleOf("issues", "opened")));
      expectError(await post(mesh.base, body(), { signature }), 401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("a malformed signature header", async () => {
      const good = sign(body());
      for (const signature of ["sha256=", "sha256=xyz", good.slice("sha256=".length), `${good}00`, "sha1=abc"]) {
        expectError(await post(mesh.base, body(), { signature }), 401);
      }
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("logs which check failed, without the secret or the signature", async () => {
      await post(mesh.base, body(), { signature: sign(body(), "not-the-secret") });
      const refused = mesh.log
        .lines()
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === "webhook refused");
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({ status: 401, path: "/webhooks/github", method: "POST" });
      expect(String(refused[0]!.reason)).toContain("X-Hub-Signature-256");
    });
  });

  it("refuses a signed delivery without X-GitHub-Event or X-GitHub-Delivery with 400", async () => {
    const body = jsonBody(exampleOf("issue_comment", "created"));
    const noEvent = await post(mesh.base, body, { event: null });
    expectError(noEvent, 400);
    expect(noEvent.json.error).toContain("X-GitHub-Event");
    const noDelivery = await post(mesh.base, body, { delivery: null });
    expectError(noDelivery, 400);
    expect(noDelivery.json.error).toContain("X-GitHub-Delivery");
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("refuses a signed body that is not JSON with 400", async () => {
    expectError(await post(mesh.base, '{"action": "created",'), 400);
    expectError(await post(mesh.base, ""), 400);
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("refuses a signed JSON body that is not an object with 400", async () => {
    for (const body of ['[{"action":"created"}]', "null", "42", '"text"']) {
      expectError(await post(mesh.base, body), 400);
    }
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("refuses a delivery id the tasks service rejects as invalid with 400, not 503", async () => {
    const res = await post(mesh.base, jsonBody(exampleOf("push")), { event: "push", delivery: "d".repeat(300) });
    expectError(res, 400);
    expect(res.headers.get("retry-after")).toBeNull();
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("refuses other content types with 415, before looking at the signature", async () => {
    const body = jsonBody(exampleOf("issue_comment", "created"));
    expectError(await post(mesh.base, body, { contentType: "text/plain" }), 415);
    expectError(await post(mesh.base, body, { contentType: "text/plain", signature: null }), 415);
    expectError(await post(mesh.base, body, { contentType: "application/jsonx" }), 415);
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("refuses a body over the limit declared by Content-Length with 413", async () => {
    const big = Buffer.from(JSON.stringify({ action: "created", padding: "x".repeat(MAX_BODY_BYTES) }));
    expect(big.length).toBeGreaterThan(MAX_BODY_BYTES);
    expectError(await post(mesh.base, big), 413);
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("accepts a body of exactly the limit", async () => {
    const payload = exampleOf("issue_comment", "created");
    const bare = JSON.stringify({ ...payload, padding: "" });
    const exact = Buffer.from(
      JSON.stringify({ ...payload, padding: "x".repeat(MAX_BODY_BYTES - Buffer.byteLength(bare)) }),
    );
    expect(exact.length).toBe(MAX_BODY_BYTES);
    expect((await post(mesh.base, exact)).status).toBe(202);
  });

  it("refuses a chunked body that grows over the limit with 413", async () => {
    const chunk = Buffer.alloc(16 * 1024, "x");
    const chunks = [Buffer.from('{"padding":"'), ...Array.from({ length: 6 }, () => chunk), Buffer.from('"}')];
    const whole = Buffer.concat(chunks);
    expect(whole.length).toBeGreaterThan(MAX_BODY_BYTES);
    const headers = {
      "content-type": "application/json",
      "x-github-event": "issue_comment",
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": sign(whole),
    };
    // The gateway answers 413 and closes without reading the rest: a write of the rest can race
    // the answer and fail with EPIPE or ECONNRESET before the answer is read, as a real sender's
    // can, which then sends again.
    let res: { status: number; body: string } | undefined;
    for (let attempt = 1; !res; attempt++) {
      res = await postChunked(`${mesh.base}/webhooks/github`, headers, chunks).catch((err: NodeJS.ErrnoException) => {
        if (attempt === 5 || (err.code !== "EPIPE" && err.code !== "ECONNRESET")) throw err;
        return undefined;
      });
    }
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toEqual({ error: expect.any(String) });
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("accepts a chunked body under the limit", async () => {
    const body = jsonBody(exampleOf("push"));
    const chunks = [body.subarray(0, 100), body.subarray(100, 5000), body.subarray(5000)];
    const res = await postChunked(
      `${mesh.base}/webhooks/github`,
      {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-hub-signature-256": sign(body),
      },
      chunks,
    );
    expect(res.status).toBe(202);
    await mesh.gateway.forwarded();
    const [task] = await mesh.listTasks();
    expect(Buffer.from(task!.event!.rawBody).equals(body)).toBe(true);
  });

  it("answers ping with 200 and creates no task", async () => {
    for (const payload of examplesOf("ping")) {
      const res = await post(mesh.base, jsonBody(payload), { event: "ping" });
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ ok: true, zen: payload.zen });
    }
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("answers 404 when no GitHub secret is configured, even to a signed delivery", async () => {
    const base = await mesh.startExtraGateway([]);
    const res = await post(base, jsonBody(exampleOf("issue_comment", "created")));
    expectError(res, 404);
    expect(await mesh.listTasks()).toHaveLength(0);
  });

  it("answers other methods with 405 and an Allow header", async () => {
    for (const method of ["GET", "PUT", "DELETE"]) {
      const res = await reply(await fetch(`${mesh.base}/webhooks/github`, { method }));
      expectError(res, 405);
      expect(res.headers.get("allow")).toBe("POST");
    }
  });

  it("answers unknown paths with 404", async () => {
    expectError(await reply(await fetch(`${mesh.base}/nope`)), 404);
    expectError(await reply(await fetch(`${mesh.base}/webhooks/gitlab`, { method: "POST", body: "{}" })), 404);
    expectError(await reply(await fetch(`${mesh.base}/webhooks/github/extra`, { method: "POST", body: "{}" })), 404);
    expectError(await reply(await fetch(`${mesh.base}/webhooks/`, { method: "POST", body: "{}" })), 404);
    expectError(await reply(await fetch(`${mesh.base}/webhooks/custom/nope`, { method: "POST", body: "{}" })), 404);
    expectError(await reply(await fetch(`${mesh.base}/webhooks/constructor`, { method: "POST", body: "{}" })), 404);
    expectError(await reply(await fetch(`${mesh.base}/webhooks/%E0%A4%A`, { method: "POST", body: "{}" })), 404);
  });

  it("answers a request target that is not a URL with 4xx, and keeps serving", async () => {
    const { port } = new URL(mesh.base);
    for (const target of ["http://[::1/webhooks/github", "http://%zz/webhooks/github", "http://a:99999/healthz"]) {
      const status = await rawStatus(
        Number(port),
        `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      expect(status).toMatch(/^HTTP\/1\.1 4\d\d /);
    }
    expect((await fetch(`${mesh.base}/healthz`)).status).toBe(200);
  });

  it("routes by path only, ignoring the query string", async () => {
    const body = jsonBody(exampleOf("push"));
    const res = await fetch(`${mesh.base}/webhooks/github?source=test`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-hub-signature-256": sign(body),
      },
      body,
    });
    expect(res.status).toBe(202);
  });

  it("serves /healthz", async () => {
    const res = await reply(await fetch(`${mesh.base}/healthz`));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok" });
  });

  it("is ready while its Redis answers, whatever the tasks service's state", async () => {
    const ready = await reply(await fetch(`${mesh.base}/readyz`));
    expect(ready.status).toBe(200);
    expect(ready.json).toEqual({ status: "ready" });

    // The outbox makes deliveries durable while tasks is down: still ready.
    await mesh.stopTasks();
    expect((await fetch(`${mesh.base}/readyz`)).status).toBe(200);
    expect((await fetch(`${mesh.base}/healthz`)).status).toBe(200);
  });

  it("keeps a delivery in the outbox with 202 while tasks is down, and makes it the task when tasks is back", async () => {
    await mesh.stopTasks();
    const body = jsonBody(exampleOf("issue_comment", "created"));
    const delivery = randomUUID();
    const res = await post(mesh.base, body, { delivery });
    expect(res.status).toBe(202);
    expect(res.json).toEqual({
      task_id: expect.any(String),
      duplicate: false,
      queued: true,
      delivery: expect.any(String),
    });
    expect(res.text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|Unavailable|stack/i);
    expect(await mesh.gateway.outbox.length()).toBe(1);

    // GitHub's retry while it waits is a duplicate, not a second entry.
    const retry = await post(mesh.base, body, { delivery });
    expect(retry.status).toBe(202);
    expect(retry.json).toMatchObject({ duplicate: true });
    expect(await mesh.gateway.outbox.length()).toBe(1);

    const queued = mesh.logLines("webhook").find((l) => l.queued === true);
    expect(queued).toMatchObject({ status: 202, deliveryId: delivery, taskId: res.json.task_id });

    await mesh.restartTasks();
    const tasks = await vi.waitFor(
      async () => {
        const listed = await mesh.listTasks();
        expect(listed).toHaveLength(1);
        return listed;
      },
      { timeout: 15_000, interval: 100 },
    );
    const event = tasks[0]!.event!;
    expect(tasks[0]!.id).toBe(res.json.task_id);
    expect(event.deliveryId).toBe(delivery);
    expect(Buffer.from(event.rawBody).equals(body)).toBe(true);
    await vi.waitFor(async () => expect(await mesh.gateway.outbox.length()).toBe(0), { timeout: 5_000, interval: 50 });
  });
});
