import { createHash, createHmac, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { exampleOf, fixture, type RunningGateway, startGateway, TEST_SECRETS } from "@hookmesh/gateway/testing";
import { createLogger, type Env } from "@hookmesh/kit";
import { callError, memoryLogger, signSlack, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { CustomRouteSchema, HmacAlgorithm, SignedContent } from "../gen/hookmesh/gateway/v1/custom_route_pb.js";
import { CustomRouteService } from "../gen/hookmesh/gateway/v1/custom_route_service_pb.js";
import { type Delivery, DeliveryStatus } from "../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DeliveryService } from "../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { type Task, TaskState, TaskView } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import {
  FORM_TYPE,
  githubHeaders,
  JSON_TYPE,
  type Json,
  jiraHeaders,
  post,
  type Reply,
  sentryHeaders,
  slackHeaders,
} from "./deliveries.js";

const CUSTOM_SECRET = "custom-acme-secret-0b7d41";
const POLL = { timeout: 15_000, interval: 50 };

/** A gRPC client over its own HTTP/2 session, closed with the test. */
interface GrpcClient<T> {
  client: T;
  close(): void;
}

function grpcClient<S extends Parameters<typeof createClient>[0]>(service: S, baseUrl: string): GrpcClient<Client<S>> {
  const sessions = new Http2SessionManager(baseUrl);
  return {
    client: createClient(service, createGrpcTransport({ baseUrl, sessionManager: sessions })),
    close: () => sessions.abort(),
  };
}

/**
 * The real tasks service and a gateway in front of it (through the harness), on one test
 * Redis prefix; tasks can be stopped and started again on its port.
 */
class Mesh {
  db!: TestRedis;
  tasks!: RunningTasks;
  gateway!: RunningGateway;
  readonly log = memoryLogger("gateway");
  private readonly tasksLogger = createLogger({ service: "tasks", level: "silent" });
  private tasksRunning = false;
  private readonly closers: Array<() => void | Promise<void>> = [];
  deliveries!: Client<typeof DeliveryService>;
  customRoutes!: Client<typeof CustomRouteService>;

  async start(env: Env = {}): Promise<this> {
    this.db = await testRedis("gateway-pipeline");
    this.tasks = await startTasks(this.db, this.tasksLogger);
    this.tasksRunning = true;
    this.gateway = await startGateway(this.db, this.tasks.url, this.log.logger, env);
    this.deliveries = this.client(DeliveryService, this.gateway.grpcUrl);
    this.customRoutes = this.client(CustomRouteService, this.gateway.grpcUrl);
    return this;
  }

  client<S extends Parameters<typeof createClient>[0]>(service: S, url: string): Client<S> {
    const { client, close } = grpcClient(service, url);
    this.closers.push(close);
    return client;
  }

  get base(): string {
    return this.gateway.base;
  }

  async stopTasks(): Promise<void> {
    if (!this.tasksRunning) return;
    this.tasksRunning = false;
    await this.tasks.close();
  }

  async restartTasks(): Promise<void> {
    this.tasks = await startTasks(this.db, this.tasksLogger, { port: this.tasks.port });
    this.tasksRunning = true;
  }

  /** Every task with its raw body (ListTasks leaves it out, GetTask gives it), oldest first (UUIDv7 ids sort by creation). */
  async listTasks(provider = Provider.UNSPECIFIED): Promise<Task[]> {
    const reader = grpcClient(TaskService, this.tasks.url);
    try {
      const { tasks: listed } = await reader.client.listTasks({ pageSize: 500, provider });
      const tasks = await Promise.all(
        listed.map(async ({ id }) => (await reader.client.getTask({ id, view: TaskView.FULL })).task!),
      );
      return tasks.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    } finally {
      reader.close();
    }
  }

  async getDelivery(id: string): Promise<Delivery> {
    return (await this.deliveries.getDelivery({ id })).delivery!;
  }

  async stop(): Promise<void> {
    for (const close of this.closers) await close();
    await this.gateway?.close();
    await this.stopTasks();
    await this.db?.cleanup();
  }
}

/** An issue comment that mentions the handle, so the default rules queue it (not ignore it). */
function mentioningComment(suffix = ""): Buffer {
  const payload = exampleOf("issue_comment", "created");
  // A suffix makes another event: the same signed body under any delivery id is a duplicate.
  (payload.comment as Json).body = `@hookmesh please look at this${suffix}`;
  return Buffer.from(JSON.stringify(payload));
}

function statusOf(task: Task): DeliveryStatus {
  return task.state === TaskState.IGNORED ? DeliveryStatus.IGNORED : DeliveryStatus.ACCEPTED;
}

describe("the webhook pipeline, through real Redis and the real tasks service", () => {
  let mesh: Mesh;

  afterEach(async () => {
    await mesh?.stop();
    const log = mesh?.log.lines().join("\n") ?? "";
    for (const secret of [...Object.values(TEST_SECRETS), CUSTOM_SECRET]) expect(log).not.toContain(secret);
  });

  describe("Slack, Jira and Sentry end to end", () => {
    beforeEach(async () => {
      mesh = await new Mesh().start();
    });

    it("makes tasks of Slack events, slash commands and interactivity, with their delivery ids", async () => {
      const mention = fixture("slack-app-mention.json");
      const thread = fixture("slack-message-thread.json");
      const command = new URLSearchParams(
        JSON.parse(fixture("slack-slash-command.json").toString("utf8")) as Record<string, string>,
      ).toString();
      const actions = new URLSearchParams({ payload: fixture("slack-block-actions.json").toString("utf8") }).toString();

      const replies = [
        await post(mesh.base, "slack", mention, slackHeaders(mention)),
        await post(mesh.base, "slack", thread, slackHeaders(thread)),
        await post(mesh.base, "slack", command, slackHeaders(command, FORM_TYPE)),
        await post(mesh.base, "slack", actions, slackHeaders(actions, FORM_TYPE)),
      ];
      for (const r of replies)
        expect({ status: r.status, json: r.json }).toMatchObject({ status: 202, json: { duplicate: false } });

      const byId = new Map((await mesh.listTasks(Provider.SLACK)).map((t) => [t.id, t]));
      const tasks = replies.map((r) => byId.get(r.json.task_id as string)!);
      expect(tasks.map((t) => t.event!.eventType)).toEqual([
        "app_mention",
        "message",
        "slash_command",
        "block_actions",
      ]);
      expect(tasks[0]!.event!.deliveryId).toBe("Ev0LAN670R");
      expect(tasks[0]!.event!.sourceId).toBe("A0MDYCDME");
      expect(tasks[2]!.event!.action).toBe("/hookmesh");
      // Slash commands and interactivity have no id: the digest of the signed body is theirs.
      expect(tasks[2]!.event!.deliveryId).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(tasks[3]!.event!.deliveryId).toMatch(/^sha256:[0-9a-f]{64}$/);
      for (const [i, body] of [mention, thread, command, actions].entries()) {
        expect(tasks[i]!.event!.provider).toBe(Provider.SLACK);
        expect(Buffer.from(tasks[i]!.event!.rawBody).equals(Buffer.from(body))).toBe(true);
      }
      expect(tasks[2]!.event!.contentType).toBe(FORM_TYPE);
    });

    it("answers Slack's url_verification with the challenge and makes no task", async () => {
      const body = JSON.stringify({
        token: "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        type: "url_verification",
      });
      const res = await post(mesh.base, "slack", body, slackHeaders(body));
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" });
      expect(await mesh.listTasks()).toHaveLength(0);
      const { deliveries } = await mesh.deliveries.listDeliveries({});
      expect(deliveries).toMatchObject([
        { status: DeliveryStatus.ANSWERED, httpStatus: 200, reason: "url_verification", provider: Provider.SLACK },
      ]);
    });

    it("answers Slack's retry of an event (X-Slack-Retry-Num) as a duplicate of the first task", async () => {
      const body = fixture("slack-app-mention.json");
      const first = await post(mesh.base, "slack", body, slackHeaders(body));
      const retry = await post(
        mesh.base,
        "slack",
        body,
        slackHeaders(body, JSON_TYPE, { "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout" }),
      );
      expect(first.json).toMatchObject({ duplicate: false });
      expect(retry.status).toBe(202);
      expect(retry.json).toEqual({ task_id: first.json.task_id, duplicate: true });
      expect((await mesh.listTasks()).map((t) => t.id)).toEqual([first.json.task_id]);
    });

    it("refuses a Slack request signed five minutes and more ago with 401", async () => {
      const body = fixture("slack-app-mention.json");
      const timestamp = Math.floor(Date.now() / 1000) - 6 * 60;
      const res = await post(mesh.base, "slack", body, {
        "content-type": JSON_TYPE,
        "x-slack-request-timestamp": String(timestamp),
        "x-slack-signature": signSlack(body, TEST_SECRETS.slack, timestamp),
      });
      expect(res.status).toBe(401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("makes tasks of Jira comment_created and jira:issue_updated, and answers Jira's retry as a duplicate", async () => {
      const comment = fixture("jira-comment-created.json");
      const updated = fixture("jira-issue-updated.json");
      const identifier = randomUUID();
      const first = await post(mesh.base, "jira", comment, jiraHeaders(comment, identifier));
      const other = await post(mesh.base, "jira", updated, jiraHeaders(updated));
      const retry = await post(mesh.base, "jira", comment, jiraHeaders(comment, identifier));
      expect(first.json).toMatchObject({ duplicate: false });
      expect(other.json).toMatchObject({ duplicate: false });
      expect(retry.json).toEqual({ task_id: first.json.task_id, duplicate: true });

      const tasks = await mesh.listTasks(Provider.JIRA);
      expect(tasks).toHaveLength(2);
      const byId = new Map(tasks.map((t) => [t.id, t.event!]));
      expect(byId.get(first.json.task_id as string)).toMatchObject({
        provider: Provider.JIRA,
        eventType: "comment_created",
        deliveryId: identifier,
      });
      expect(byId.get(other.json.task_id as string)).toMatchObject({
        provider: Provider.JIRA,
        eventType: "jira:issue_updated",
      });
      expect(Buffer.from(byId.get(first.json.task_id as string)!.rawBody).equals(comment)).toBe(true);
    });

    it("makes tasks of Sentry issue and comment webhooks, and answers a repeated Request-ID as a duplicate", async () => {
      const issue = fixture("sentry-issue-created.json");
      const comment = fixture("sentry-comment-created.json");
      const requestId = randomUUID();
      const first = await post(mesh.base, "sentry", issue, sentryHeaders(issue, "issue", requestId));
      const other = await post(mesh.base, "sentry", comment, sentryHeaders(comment, "comment"));
      const again = await post(mesh.base, "sentry", issue, sentryHeaders(issue, "issue", requestId));
      expect(first.json).toMatchObject({ duplicate: false });
      expect(other.json).toMatchObject({ duplicate: false });
      expect(again.json).toEqual({ task_id: first.json.task_id, duplicate: true });

      const byId = new Map((await mesh.listTasks(Provider.SENTRY)).map((t) => [t.id, t.event!]));
      expect(byId.size).toBe(2);
      expect(byId.get(first.json.task_id as string)).toMatchObject({
        provider: Provider.SENTRY,
        eventType: "issue",
        action: "created",
        deliveryId: requestId,
        sourceId: "a8e5d37a-696c-4c54-adb5-b3f28d64c7de",
      });
      expect(byId.get(other.json.task_id as string)).toMatchObject({ eventType: "comment", action: "created" });
      expect(Buffer.from(byId.get(first.json.task_id as string)!.rawBody).equals(issue)).toBe(true);
    });

    it("refuses a Sentry webhook whose body was re-serialized after signing", async () => {
      const issue = fixture("sentry-issue-created.json");
      const reserialized = JSON.stringify(JSON.parse(issue.toString("utf8")));
      expect(reserialized).not.toBe(issue.toString("utf8"));
      const res = await post(mesh.base, "sentry", reserialized, sentryHeaders(issue, "issue"));
      expect(res.status).toBe(401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });
  });

  describe("unsigned providers", () => {
    const body = fixture("sentry-issue-created.json");
    const unsigned = { "content-type": JSON_TYPE, "sentry-hook-resource": "issue", "request-id": "unsigned-1" };

    it("accepts unsigned Sentry webhooks when allowed and no secret is configured", async () => {
      mesh = await new Mesh().start({ SENTRY_CLIENT_SECRET: "", GATEWAY_ALLOW_UNSIGNED: "sentry" });
      const res = await post(mesh.base, "sentry", body, unsigned);
      expect(res.status).toBe(202);
      const [task] = await mesh.listTasks();
      expect(task!.event).toMatchObject({ provider: Provider.SENTRY, deliveryId: "unsigned-1" });
      // The other providers are still signed.
      const github = exampleOf("push");
      expect(
        (await post(mesh.base, "github", JSON.stringify(github), { ...githubHeaders("x"), "x-github-event": "push" }))
          .status,
      ).toBe(401);
    });

    it("answers 404 for a provider without a secret that is not allowed unsigned", async () => {
      mesh = await new Mesh().start({ SENTRY_CLIENT_SECRET: "" });
      expect((await post(mesh.base, "sentry", body, unsigned)).status).toBe(404);
      expect((await post(mesh.base, "sentry", body, sentryHeaders(body, "issue"))).status).toBe(404);
      expect(await mesh.listTasks()).toHaveLength(0);
    });

    it("still requires the signature of a provider allowed unsigned that has a secret", async () => {
      mesh = await new Mesh().start({ GATEWAY_ALLOW_UNSIGNED: "sentry" });
      expect((await post(mesh.base, "sentry", body, unsigned)).status).toBe(401);
      expect(await mesh.listTasks()).toHaveLength(0);
    });
  });

  describe("custom routes", () => {
    beforeEach(async () => {
      mesh = await new Mesh().start();
      await mesh.customRoutes.upsertCustomRoute({
        route: create(CustomRouteSchema, {
          name: "acme",
          signatureHeader: "X-Acme-Signature",
          signaturePrefix: "sha256=",
          algorithm: HmacAlgorithm.SHA256,
          signedContent: SignedContent.BODY,
          deliveryIdHeader: "X-Acme-Delivery",
          eventTypeHeader: "X-Acme-Event",
          secret: CUSTOM_SECRET,
        }),
      });
    });

    function acmeHeaders(body: string, delivery: string, secret = CUSTOM_SECRET): Record<string, string> {
      return {
        "content-type": JSON_TYPE,
        "x-acme-event": "build.failed",
        "x-acme-delivery": delivery,
        "x-acme-signature": `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`,
      };
    }

    it("makes a task of a signed request to a route created over gRPC", async () => {
      const body = JSON.stringify({ text: "@hookmesh the nightly build failed", build: 4711 });
      const res = await post(mesh.base, "custom/acme", body, acmeHeaders(body, "acme-1"));
      expect(res.status).toBe(202);
      expect(res.json).toMatchObject({ duplicate: false });
      const [task] = await mesh.listTasks(Provider.CUSTOM);
      expect(task!.id).toBe(res.json.task_id);
      expect(task!.event).toMatchObject({
        provider: Provider.CUSTOM,
        sourceId: "acme",
        eventType: "build.failed",
        deliveryId: "acme-1",
        text: "@hookmesh the nightly build failed",
      });
      expect(Buffer.from(task!.event!.rawBody).toString()).toBe(body);
      const again = await post(mesh.base, "custom/acme", body, acmeHeaders(body, "acme-1"));
      expect(again.json).toEqual({ task_id: task!.id, duplicate: true });
      const [duplicate, logged] = (await mesh.deliveries.listDeliveries({ provider: Provider.CUSTOM })).deliveries;
      expect(duplicate).toMatchObject({
        route: "custom/acme",
        deliveryId: "acme-1",
        status: DeliveryStatus.DUPLICATE,
        taskId: task!.id,
      });
      expect(logged).toMatchObject({
        route: "custom/acme",
        deliveryId: "acme-1",
        status: statusOf(task!),
        taskId: task!.id,
      });
      expect(logged!.headers["x-acme-signature"]).toBe("[redacted]");
    });

    it("refuses a wrong signature with 401 and an unknown route with 404", async () => {
      const body = JSON.stringify({ text: "hi" });
      expect((await post(mesh.base, "custom/acme", body, acmeHeaders(body, "acme-2", "not-the-secret"))).status).toBe(
        401,
      );
      expect((await post(mesh.base, "custom/other", body, acmeHeaders(body, "acme-3"))).status).toBe(404);
      expect(await mesh.listTasks()).toHaveLength(0);
      // A route that does not exist has no deliveries: probing for routes cannot fill the log.
      const { deliveries } = await mesh.deliveries.listDeliveries({ status: DeliveryStatus.REJECTED });
      expect(deliveries.map((d) => [d.route, d.httpStatus])).toEqual([["custom/acme", 401]]);
    });

    it("redacts the route's own signature header in the delivery log, whatever its name", async () => {
      await mesh.customRoutes.upsertCustomRoute({
        route: create(CustomRouteSchema, {
          name: "hmac-tool",
          signatureHeader: "X-Tool-Hmac",
          algorithm: HmacAlgorithm.SHA256,
          signedContent: SignedContent.BODY,
          deliveryIdHeader: "X-Tool-Delivery",
          secret: CUSTOM_SECRET,
        }),
      });
      const body = JSON.stringify({ text: "hi" });
      const signature = createHmac("sha256", CUSTOM_SECRET).update(body).digest("hex");
      const headers = { "content-type": JSON_TYPE, "x-tool-delivery": "tool-1", "x-tool-hmac": signature };
      expect((await post(mesh.base, "custom/hmac-tool", body, headers)).status).toBe(202);
      expect(
        (await post(mesh.base, "custom/hmac-tool", body, { ...headers, "x-tool-hmac": "ab".repeat(32) })).status,
      ).toBe(401);
      const { deliveries } = await mesh.deliveries.listDeliveries({ provider: Provider.CUSTOM });
      expect(deliveries).toHaveLength(2);
      const [refused, accepted] = deliveries;
      expect(accepted!.headers["x-tool-hmac"]).toBe("[redacted]");
      expect(accepted!.headers["x-tool-delivery"]).toBe("tool-1");
      // A refused request keeps only a short allowlist of headers, which no signature header is on.
      expect(Object.keys(refused!.headers).sort()).toEqual(["content-length", "content-type", "user-agent"]);
    });

    it("stops answering a route once it is deleted", async () => {
      await mesh.customRoutes.deleteCustomRoute({ name: "acme" });
      const body = JSON.stringify({ text: "hi" });
      expect((await post(mesh.base, "custom/acme", body, acmeHeaders(body, "acme-4"))).status).toBe(404);
    });
  });

  describe("the outbox and its forwarder", () => {
    beforeEach(async () => {
      mesh = await new Mesh().start();
    });

    it("keeps deliveries while tasks is down and forwards them, in arrival order, once it is back", async () => {
      await mesh.stopTasks();
      const sent: Array<{ delivery: string; body: Buffer; logId: string; taskId: string }> = [];
      for (let i = 0; i < 12; i++) {
        const payload = exampleOf("issues", "opened");
        (payload.issue as Json).title = `issue ${i}`;
        const body = Buffer.from(JSON.stringify(payload));
        const delivery = randomUUID();
        const res = await post(mesh.base, "github", body, githubHeaders(body, { event: "issues", delivery }));
        expect(res.status).toBe(202);
        expect(res.json).toEqual({
          task_id: expect.any(String),
          duplicate: false,
          queued: true,
          delivery: expect.any(String),
        });
        sent.push({ delivery, body, logId: res.json.delivery as string, taskId: res.json.task_id as string });
      }
      // A provider's retry of a queued delivery is a duplicate, not a second outbox entry.
      const retry = await post(
        mesh.base,
        "github",
        sent[3]!.body,
        githubHeaders(sent[3]!.body, { event: "issues", delivery: sent[3]!.delivery }),
      );
      expect(retry.status).toBe(202);
      expect(retry.json).toMatchObject({ duplicate: true });
      expect(await mesh.gateway.outbox.length()).toBe(sent.length);

      for (const s of sent) {
        const logged = await mesh.getDelivery(s.logId);
        expect(logged).toMatchObject({
          status: DeliveryStatus.QUEUED,
          httpStatus: 202,
          deliveryId: s.delivery,
          taskId: s.taskId,
        });
        expect(Buffer.from(logged.rawBody).equals(s.body)).toBe(true);
      }

      await mesh.restartTasks();
      const tasks = await vi.waitFor(async () => {
        const listed = await mesh.listTasks();
        expect(listed).toHaveLength(sent.length);
        return listed;
      }, POLL);
      await vi.waitFor(async () => expect(await mesh.gateway.outbox.length()).toBe(0), POLL);

      // Oldest task first: the order the deliveries arrived in.
      expect(tasks.map((t) => t.event!.deliveryId)).toEqual(sent.map((s) => s.delivery));
      const created = tasks.map((t) => timestampMs(t.createTime!));
      expect([...created].sort((a, b) => a - b)).toEqual(created);
      for (const [i, s] of sent.entries()) {
        expect(Buffer.from(tasks[i]!.event!.rawBody).equals(s.body)).toBe(true);
        const logged = await mesh.getDelivery(s.logId);
        expect(logged.status).toBe(statusOf(tasks[i]!));
        expect(logged.taskId).toBe(tasks[i]!.id);
        // The task the acknowledgment named.
        expect(tasks[i]!.id).toBe(s.taskId);
      }
      // Once forwarded, the duplicate check knows the task: a late retry gets its id.
      const late = await post(
        mesh.base,
        "github",
        sent[0]!.body,
        githubHeaders(sent[0]!.body, { event: "issues", delivery: sent[0]!.delivery }),
      );
      expect(late.json).toEqual({ task_id: tasks[0]!.id, duplicate: true });
      expect(await mesh.listTasks()).toHaveLength(sent.length);
    });

    it("answers a delivery of every provider with 202 while tasks is down, and forwards each once", async () => {
      await mesh.stopTasks();
      const slack = fixture("slack-app-mention.json");
      const jira = fixture("jira-comment-created.json");
      const sentry = fixture("sentry-issue-created.json");
      const github = mentioningComment();
      const replies = [
        await post(mesh.base, "github", github, githubHeaders(github)),
        await post(mesh.base, "slack", slack, slackHeaders(slack)),
        await post(mesh.base, "jira", jira, jiraHeaders(jira)),
        await post(mesh.base, "sentry", sentry, sentryHeaders(sentry, "issue")),
      ];
      for (const r of replies)
        expect({ status: r.status, json: r.json }).toMatchObject({ status: 202, json: { queued: true } });
      await mesh.restartTasks();
      const tasks = await vi.waitFor(async () => {
        const listed = await mesh.listTasks();
        expect(listed).toHaveLength(4);
        return listed;
      }, POLL);
      expect(tasks.map((t) => t.event!.provider)).toEqual([
        Provider.GITHUB,
        Provider.SLACK,
        Provider.JIRA,
        Provider.SENTRY,
      ]);
    });
  });

  describe("the delivery log over gRPC", () => {
    beforeEach(async () => {
      mesh = await new Mesh().start();
    });

    it("records every outcome with its HTTP status, reason and task", async () => {
      const comment = mentioningComment();
      const accepted = await post(mesh.base, "github", comment, {
        ...githubHeaders(comment, { delivery: "d-accepted" }),
        authorization: "Bearer abc",
        cookie: "session=1",
      });
      const duplicate = await post(mesh.base, "github", comment, githubHeaders(comment, { delivery: "d-accepted" }));
      const push = Buffer.from(JSON.stringify(exampleOf("push")));
      const ignored = await post(
        mesh.base,
        "github",
        push,
        githubHeaders(push, { event: "push", delivery: "d-ignored" }),
      );
      const forged = await post(
        mesh.base,
        "github",
        comment,
        githubHeaders(comment, { delivery: "d-forged", secret: "not-the-secret" }),
      );
      const ping = Buffer.from(JSON.stringify(exampleOf("ping")));
      const answered = await post(mesh.base, "github", ping, githubHeaders(ping, { event: "ping" }));
      expect([accepted, duplicate, ignored, forged, answered].map((r) => r.status)).toEqual([202, 202, 202, 401, 200]);

      const { deliveries } = await mesh.deliveries.listDeliveries({});
      expect(deliveries.map((d) => d.status)).toEqual([
        DeliveryStatus.ANSWERED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.IGNORED,
        DeliveryStatus.DUPLICATE,
        DeliveryStatus.ACCEPTED,
      ]);
      const [ans, rej, ign, dup, acc] = deliveries;
      expect(acc).toMatchObject({
        route: "github",
        provider: Provider.GITHUB,
        httpStatus: 202,
        taskId: accepted.json.task_id,
        deliveryId: "d-accepted",
        eventType: "issue_comment",
      });
      expect(dup).toMatchObject({ httpStatus: 202, taskId: accepted.json.task_id, deliveryId: "d-accepted" });
      expect(ign).toMatchObject({
        httpStatus: 202,
        taskId: ignored.json.task_id,
        deliveryId: "d-ignored",
        eventType: "push",
      });
      expect(rej).toMatchObject({
        httpStatus: 401,
        reason: "X-Hub-Signature-256 does not match any configured secret",
        taskId: "",
      });
      expect(ans).toMatchObject({ httpStatus: 200, reason: "ping", taskId: "" });
      // Listing leaves bodies out; getting one has it, byte for byte.
      expect(deliveries.every((d) => d.rawBody.length === 0)).toBe(true);
      const full = await mesh.getDelivery(acc!.id);
      expect(Buffer.from(full.rawBody).equals(comment)).toBe(true);
      expect(full.rawBodyTruncated).toBe(false);
      expect(full.headers).toMatchObject({
        "x-hub-signature-256": "[redacted]",
        authorization: "[redacted]",
        cookie: "[redacted]",
        "x-github-delivery": "d-accepted",
        "x-github-event": "issue_comment",
        "content-type": JSON_TYPE,
      });
    });

    it("redacts every provider's signature and never stores one", async () => {
      const slack = fixture("slack-app-mention.json");
      const sentry = fixture("sentry-issue-created.json");
      const jira = fixture("jira-comment-created.json");
      const github = mentioningComment();
      const headers = [slackHeaders(slack), sentryHeaders(sentry, "issue"), jiraHeaders(jira), githubHeaders(github)];
      await post(mesh.base, "slack", slack, headers[0]!);
      await post(mesh.base, "sentry", sentry, headers[1]!);
      await post(mesh.base, "jira", jira, headers[2]!);
      await post(mesh.base, "github", github, headers[3]!);
      // A refused request's signature is not kept either.
      const refused: Record<string, string> = { ...slackHeaders(slack), "x-slack-signature": `v0=${"ab".repeat(32)}` };
      await post(mesh.base, "slack", slack, refused);

      const { deliveries } = await mesh.deliveries.listDeliveries({});
      expect(deliveries).toHaveLength(5);
      const recorded = deliveries.map((d) => d.headers);
      expect(recorded[4]!["x-slack-signature"]).toBe("[redacted]");
      expect(recorded[1]!["x-hub-signature-256"]).toBe("[redacted]");
      expect(recorded[2]!["x-hub-signature"]).toBe("[redacted]");
      expect(recorded[3]!["sentry-hook-signature"]).toBe("[redacted]");
      // A refused request's headers are an allowlist: its signature is not even named.
      expect(recorded[0]!["x-slack-signature"]).toBeUndefined();
      expect(recorded[0]!["x-slack-request-timestamp"]).toBe(refused["x-slack-request-timestamp"]);
      expect(recorded[3]!["request-id"]).toBe(headers[1]!["request-id"]);

      const signatures = headers.map((h) =>
        (h["x-slack-signature"] ??
          h["x-hub-signature-256"] ??
          h["x-hub-signature"] ??
          h["sentry-hook-signature"])!.replace(/^\w+=/, ""),
      );
      signatures.push("ab".repeat(32));
      const keys = await mesh.db.redis.keys(`${mesh.db.prefix}gateway:*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        const type = await mesh.db.redis.type(key);
        const values: Array<Buffer | null> =
          type === "string"
            ? [await mesh.db.redis.getBuffer(key)]
            : type === "zset"
              ? (await mesh.db.redis.zrange(key, "0", "-1")).map((m) => Buffer.from(String(m)))
              : type === "stream"
                ? (await mesh.db.redis.xrangeBuffer(key, "-", "+")).flatMap(([, fields]) => fields)
                : [];
        for (const value of values) for (const signature of signatures) expect(value!.includes(signature)).toBe(false);
      }
    });

    it("keeps no body of a refused request, only its size and digest, and will not redeliver it", async () => {
      const big = Buffer.from(JSON.stringify({ action: "created", padding: "x".repeat(100 * 1024) }));
      const res = await post(mesh.base, "github", big, githubHeaders(big, { secret: "forged" }));
      expect(res.status).toBe(401);
      const [logged] = (await mesh.deliveries.listDeliveries({ status: DeliveryStatus.REJECTED })).deliveries;
      const full = await mesh.getDelivery(logged!.id);
      expect(full.rawBody).toHaveLength(0);
      expect(full).toMatchObject({
        bodySize: BigInt(big.length),
        bodySha256: createHash("sha256").update(big).digest("hex"),
        rawBodyTruncated: false,
      });
      const refused = await callError(mesh.deliveries.redeliver({ id: logged!.id }));
      expect(refused.code).toBe(Code.FailedPrecondition);
    });

    it("keeps an accepted body over 64 KiB whole", async () => {
      const payload = exampleOf("issue_comment", "created");
      (payload.comment as Json).body = `@hookmesh ${"y".repeat(100 * 1024)}`;
      const body = Buffer.from(JSON.stringify(payload));
      const res = await post(mesh.base, "github", body, githubHeaders(body));
      expect(res.status).toBe(202);
      const [logged] = (await mesh.deliveries.listDeliveries({})).deliveries;
      const full = await mesh.getDelivery(logged!.id);
      expect(full.rawBodyTruncated).toBe(false);
      expect(Buffer.from(full.rawBody).equals(body)).toBe(true);
    });

    it("lists newest first, filters by provider and status, and pages with tokens", async () => {
      const slack = fixture("slack-app-mention.json");
      const sentry = fixture("sentry-issue-created.json");
      const sent: string[] = [];
      for (let i = 0; i < 3; i++) {
        const body = mentioningComment(`round ${i}`);
        sent.push((await post(mesh.base, "github", body, githubHeaders(body))).status === 202 ? "github" : "?");
        sent.push((await post(mesh.base, "slack", slack, slackHeaders(slack))).status === 202 ? "slack" : "?");
        sent.push(
          (
            await post(mesh.base, "sentry", sentry, {
              ...sentryHeaders(sentry, "issue"),
              "sentry-hook-signature": "00",
            })
          ).status === 401
            ? "sentry-rejected"
            : "?",
        );
      }
      const all = (await mesh.deliveries.listDeliveries({})).deliveries;
      expect(all).toHaveLength(9);
      const routes = all.map((d) => (d.status === DeliveryStatus.REJECTED ? `${d.route}-rejected` : d.route));
      expect(routes).toEqual([...sent].reverse());
      const ids = all.map((d) => d.id);
      expect([...ids].sort().reverse()).toEqual(ids);
      const times = all.map((d) => timestampMs(d.receiveTime!));
      expect([...times].sort((a, b) => b - a)).toEqual(times);

      const slackOnly = (await mesh.deliveries.listDeliveries({ provider: Provider.SLACK })).deliveries;
      expect(slackOnly.map((d) => d.status)).toEqual([
        DeliveryStatus.DUPLICATE,
        DeliveryStatus.DUPLICATE,
        expect.any(Number),
      ]);
      expect(slackOnly.every((d) => d.provider === Provider.SLACK)).toBe(true);
      const rejected = (await mesh.deliveries.listDeliveries({ status: DeliveryStatus.REJECTED })).deliveries;
      expect(rejected.map((d) => d.provider)).toEqual([Provider.SENTRY, Provider.SENTRY, Provider.SENTRY]);
      expect((await mesh.deliveries.listDeliveries({ provider: Provider.JIRA })).deliveries).toEqual([]);
      const both = (
        await mesh.deliveries.listDeliveries({ provider: Provider.GITHUB, status: DeliveryStatus.ACCEPTED })
      ).deliveries;
      expect(both).toHaveLength(3);

      // Pages of 2 walk the whole list once, in order.
      const paged: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await mesh.deliveries.listDeliveries({ pageSize: 2, pageToken });
        expect(page.deliveries.length).toBeLessThanOrEqual(2);
        paged.push(...page.deliveries.map((d) => d.id));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "" && pages < 20);
      expect(paged).toEqual(ids);
      // Paging with a filter.
      const first = await mesh.deliveries.listDeliveries({ pageSize: 2, status: DeliveryStatus.REJECTED });
      expect(first.deliveries).toHaveLength(2);
      const second = await mesh.deliveries.listDeliveries({
        pageSize: 2,
        status: DeliveryStatus.REJECTED,
        pageToken: first.nextPageToken,
      });
      expect([...first.deliveries, ...second.deliveries].map((d) => d.id)).toEqual(rejected.map((d) => d.id));
      expect(second.nextPageToken).toBe("");

      // A token is only good for the filters it was issued for.
      expect((await callError(mesh.deliveries.listDeliveries({ pageToken: "not-a-token" }))).code).toBe(
        Code.InvalidArgument,
      );
      expect((await callError(mesh.deliveries.listDeliveries({ pageToken: first.nextPageToken }))).code).toBe(
        Code.InvalidArgument,
      );
      expect((await callError(mesh.deliveries.listDeliveries({ pageSize: -1 }))).code).toBe(Code.InvalidArgument);
    });

    it("answers NotFound for an unknown delivery", async () => {
      expect((await callError(mesh.deliveries.getDelivery({ id: randomUUID() }))).code).toBe(Code.NotFound);
      expect((await callError(mesh.deliveries.redeliver({ id: randomUUID() }))).code).toBe(Code.NotFound);
    });

    it("redelivers an accepted delivery as a new log entry, counting it on the original", async () => {
      const body = mentioningComment();
      const res = await post(mesh.base, "github", body, githubHeaders(body, { delivery: "d-redeliver" }));
      const [original] = (await mesh.deliveries.listDeliveries({})).deliveries;
      expect(original!.status).toBe(DeliveryStatus.ACCEPTED);

      const { delivery: again } = await mesh.deliveries.redeliver({ id: original!.id });
      expect(again!.id).not.toBe(original!.id);
      // The gateway's duplicate check is bypassed; the tasks service still knows the delivery.
      expect([DeliveryStatus.ACCEPTED, DeliveryStatus.DUPLICATE]).toContain(again!.status);
      expect(again).toMatchObject({
        status: DeliveryStatus.DUPLICATE,
        taskId: res.json.task_id,
        deliveryId: "d-redeliver",
        route: "github",
      });
      // A duplicate's entry is brief: its body is the original's.
      expect(again!.rawBody).toHaveLength(0);
      expect(again!.bodySha256).toBe(createHash("sha256").update(body).digest("hex"));
      expect((await callError(mesh.deliveries.redeliver({ id: again!.id }))).code).toBe(Code.FailedPrecondition);
      expect((await mesh.getDelivery(original!.id)).redeliveries).toBe(1);
      await mesh.deliveries.redeliver({ id: original!.id });
      expect((await mesh.getDelivery(original!.id)).redeliveries).toBe(2);
      expect((await mesh.deliveries.listDeliveries({})).deliveries).toHaveLength(3);
      expect(await mesh.listTasks()).toHaveLength(1);
    });

    it("redelivers a delivery whose task is gone as a new task", async () => {
      const body = mentioningComment();
      await post(mesh.base, "github", body, githubHeaders(body, { delivery: "d-lost" }));
      const [original] = (await mesh.deliveries.listDeliveries({})).deliveries;
      // What an operator faces after the tasks service lost its data.
      for (const key of await mesh.db.redis.keys(`${mesh.db.prefix}*`)) {
        if (!key.startsWith(`${mesh.db.prefix}gateway:`)) await mesh.db.redis.del(key);
      }
      expect(await mesh.listTasks()).toHaveLength(0);
      const { delivery: again } = await mesh.deliveries.redeliver({ id: original!.id });
      const [task] = await mesh.listTasks();
      expect(again!.status).toBe(statusOf(task!));
      expect(again!.taskId).toBe(task!.id);
      expect(task!.event!.deliveryId).toBe("d-lost");
    });

    it("refuses to redeliver a rejected or answered delivery", async () => {
      const body = mentioningComment();
      await post(mesh.base, "github", body, githubHeaders(body, { secret: "forged" }));
      const ping = Buffer.from(JSON.stringify(exampleOf("ping")));
      await post(mesh.base, "github", ping, githubHeaders(ping, { event: "ping" }));
      const [answered, rejected] = (await mesh.deliveries.listDeliveries({})).deliveries;
      for (const d of [answered!, rejected!]) {
        const err = await callError(mesh.deliveries.redeliver({ id: d.id }));
        expect(err.code).toBe(Code.FailedPrecondition);
      }
      expect(await mesh.listTasks()).toHaveLength(0);
    });
  });

  describe("rate limit", () => {
    it("answers the third quick request from one address with 429 and Retry-After, and leaves other routes alone", async () => {
      mesh = await new Mesh().start({ GATEWAY_RATE_LIMIT: "1", GATEWAY_RATE_BURST: "2" });
      // Sent together: post() answers a 202 only once the forwarder has made the task.
      const replies: Reply[] = await Promise.all(
        [0, 1, 2].map((i) => {
          const body = Buffer.from(JSON.stringify({ ...exampleOf("push"), after: `${i}`.repeat(40) }));
          return post(mesh.base, "github", body, githubHeaders(body, { event: "push" }));
        }),
      );
      expect(replies.map((r) => r.status).sort()).toEqual([202, 202, 429]);
      const limited = replies.find((r) => r.status === 429)!;
      expect(limited.headers.get("retry-after")).toBe("1");
      expect(limited.json).toEqual({ error: expect.any(String) });

      const slack = fixture("slack-app-mention.json");
      expect((await post(mesh.base, "slack", slack, slackHeaders(slack))).status).toBe(202);
      // Refused before anything is read or stored: a flood is not written to the delivery log.
      expect((await mesh.deliveries.listDeliveries({ status: DeliveryStatus.REJECTED })).deliveries).toEqual([]);
      expect(await mesh.listTasks()).toHaveLength(3);
    });
  });
});
