import { createHmac, timingSafeEqual } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { freePort } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Task, TaskEventSchema, TaskSchema, TaskStage, TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { sendCommand } from "../src/send.js";

const SECRET = "send-test-secret";

function hmac(data: string): string {
  return createHmac("sha256", SECRET).update(data).digest("hex");
}

/**
 * Each provider's signature, checked from its documentation rather than with the CLI's code,
 * as the gateway would check it.
 */
const VERIFY: Record<string, (headers: IncomingHttpHeaders, body: string) => boolean> = {
  github: (h, body) => same(h["x-hub-signature-256"], `sha256=${hmac(body)}`),
  slack: (h, body) =>
    Math.abs(Date.now() / 1000 - Number(h["x-slack-request-timestamp"])) < 300 &&
    same(h["x-slack-signature"], `v0=${hmac(`v0:${h["x-slack-request-timestamp"]}:${body}`)}`),
  jira: (h, body) => same(h["x-hub-signature"], `sha256=${hmac(body)}`),
  sentry: (h, body) => same(h["sentry-hook-signature"], hmac(body)),
};

function same(header: string | string[] | undefined, expected: string): boolean {
  return (
    typeof header === "string" &&
    header.length === expected.length &&
    timingSafeEqual(Buffer.from(header), Buffer.from(expected))
  );
}

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A stand-in for the gateway's HTTP endpoints: verifies the signature, then answers as told. */
class FakeGateway {
  readonly received: Received[] = [];
  answer: { status: number; body: object } = { status: 202, body: { task_id: "task-1", duplicate: false } };
  private readonly server: Server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      this.received.push({ path: req.url ?? "", headers: req.headers, body });
      const verify = VERIFY[(req.url ?? "").replace("/webhooks/", "")];
      const { status, body: reply } = verify?.(req.headers, body)
        ? this.answer
        : { status: 401, body: { error: "signature mismatch" } };
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(reply));
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The tasks service, in memory: one task, and its timeline. */
function fakeTasks(task: Task | undefined, notFoundTimes = 0): Client<typeof TaskService> {
  let lookups = 0;
  return createClient(
    TaskService,
    createRouterTransport((router) =>
      router.service(TaskService, {
        getTask() {
          if (!task) throw new ConnectError("tasks is down", Code.Unavailable);
          // The task the gateway named, before its forwarder has made it.
          if (lookups++ < notFoundTimes) throw new ConnectError("task-1 not found", Code.NotFound);
          return { task };
        },
        async *watchTask() {
          for (const [stage, detail] of [
            [TaskStage.RECEIVED, "github issue_comment delivery d-1"],
            [TaskStage.COMPLETED, "exit 0, 0s, $0.0000"],
          ] as const) {
            yield {
              event: create(TaskEventSchema, {
                time: timestampNow(),
                attempt: 1,
                kind: { case: "stage", value: { stage, detail } },
              }),
            };
          }
        },
      }),
    ),
  );
}

function taskIn(state: TaskState, reason: string, answer = ""): Task {
  return create(TaskSchema, { id: "task-1", state, transitions: [{ state, reason }], result: { answer } });
}

describe("hookmesh send", () => {
  let gateway: FakeGateway;
  let env: NodeJS.ProcessEnv;
  let lines: string[];
  const print = (line: string) => lines.push(line);
  const signal = new AbortController().signal;
  const queued = fakeTasks(taskIn(TaskState.QUEUED, "matched route github-mention"));

  beforeEach(async () => {
    gateway = new FakeGateway();
    lines = [];
    env = { GATEWAY_HTTP_URL: await gateway.start(), GITHUB_WEBHOOK_SECRET: SECRET };
  });

  afterEach(() => gateway.close());

  it("posts a signed issue_comment by the repository's owner that mentions hookmesh, and names the task", async () => {
    const code = await sendCommand(["github", "--mention", "please review"], { env, print, tasks: queued, signal });

    expect(code).toBe(0);
    const [request] = gateway.received;
    expect(request).toMatchObject({
      path: "/webhooks/github",
      headers: { "content-type": "application/json", "x-github-event": "issue_comment" },
    });
    const payload = JSON.parse(request!.body);
    expect(payload).toMatchObject({
      action: "created",
      comment: { body: "@hookmesh please review", author_association: "OWNER" },
      issue: { number: 1 },
      repository: { name: "hello-world", owner: { login: "octocat" } },
    });
    expect(lines).toEqual([
      `delivery ${request!.headers["x-github-delivery"]}  github issue_comment  POST ${env.GATEWAY_HTTP_URL}/webhooks/github  202`,
      "task task-1  QUEUED: matched route github-mention",
    ]);
  });

  it.each([
    ["slack", "SLACK_SIGNING_SECRET", (p: { event: { text: string } }) => p.event.text, "<@U0HOOKMESH> hi"],
    ["jira", "JIRA_WEBHOOK_SECRET", (p: { comment: { body: string } }) => p.comment.body, "@hookmesh hi"],
    ["sentry", "SENTRY_CLIENT_SECRET", (p: { data: { comment: string } }) => p.data.comment, "@hookmesh hi"],
  ])("signs a %s delivery with %s as the gateway verifies it", async (provider, variable, textOf, text) => {
    const code = await sendCommand([provider, "--mention", "hi"], {
      env: { GATEWAY_HTTP_URL: env.GATEWAY_HTTP_URL, [variable]: SECRET },
      print,
      tasks: queued,
      signal,
    });

    expect(code).toBe(0);
    expect(gateway.received[0]!.path).toBe(`/webhooks/${provider}`);
    expect((textOf as (p: unknown) => string)(JSON.parse(gateway.received[0]!.body))).toBe(text);
    expect(lines[0]).toMatch(new RegExp(`^delivery \\S+  ${provider} \\S+  POST .*/webhooks/${provider}  202$`));
  });

  it("reads the secret from its _FILE, as the gateway does, and mentions HOOKMESH_MENTION", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hookmesh-send-"));
    try {
      writeFileSync(join(dir, "secret"), `${SECRET}\n`);
      const fromFile = {
        GATEWAY_HTTP_URL: env.GATEWAY_HTTP_URL,
        GITHUB_WEBHOOK_SECRET_FILE: join(dir, "secret"),
        HOOKMESH_MENTION: "@bot",
      };
      await sendCommand(["github"], { env: fromFile, print, tasks: queued, signal });
    } finally {
      await rm(dir, { recursive: true });
    }
    expect(JSON.parse(gateway.received[0]!.body).comment.body).toBe("@bot please say hello");
    expect(lines[0]).toMatch(/ {2}202$/);
  });

  it("fails on a refusal, saying what the gateway answered and which variable to check", async () => {
    const wrong = { ...env, GITHUB_WEBHOOK_SECRET: "another-secret" };
    await expect(sendCommand(["github"], { env: wrong, print, tasks: queued, signal })).rejects.toThrow(
      "the gateway answered 401 signature mismatch (is GITHUB_WEBHOOK_SECRET the same here as for the gateway?)",
    );
    expect(lines[0]).toMatch(/ {2}401$/);
  });

  it("refuses to send without a secret or a provider, and says why a gateway cannot be reached", async () => {
    await expect(
      sendCommand(["github"], { env: { GATEWAY_HTTP_URL: env.GATEWAY_HTTP_URL }, print, tasks: queued, signal }),
    ).rejects.toThrow("GITHUB_WEBHOOK_SECRET (or GITHUB_WEBHOOK_SECRET_FILE) is not set");
    await expect(sendCommand(["gitlab"], { env, print, tasks: queued, signal })).rejects.toThrow(
      "usage: hookmesh send github|slack|jira|sentry",
    );
    expect(gateway.received).toEqual([]);
    const closed = { ...env, GATEWAY_HTTP_URL: `http://127.0.0.1:${await freePort()}` };
    await expect(sendCommand(["github"], { env: closed, print, tasks: queued, signal })).rejects.toThrow(
      /cannot reach the gateway at .* \(ECONNREFUSED\); is it running\? \(GATEWAY_HTTP_URL\)/,
    );
  });

  it("says why a task was ignored, and names the task alone when tasks cannot be asked", async () => {
    const ignored = fakeTasks(taskIn(TaskState.IGNORED, "author association NONE may not trigger github-mention"));
    await sendCommand(["github"], { env, print, tasks: ignored, signal });
    await sendCommand(["github"], { env, print, tasks: fakeTasks(undefined), signal });

    expect(lines.filter((line) => line.startsWith("task "))).toEqual([
      "task task-1  IGNORED: author association NONE may not trigger github-mention",
      "task task-1",
    ]);
  });

  it("waits for the task the gateway's answer names to be made", async () => {
    gateway.answer = { status: 202, body: { task_id: "task-1", queued: true, delivery: "0196-log-id" } };
    const later = fakeTasks(taskIn(TaskState.QUEUED, "matched route github-mention"), 3);
    expect(await sendCommand(["github"], { env, print, tasks: later, signal })).toBe(0);
    expect(lines[1]).toBe("task task-1  QUEUED: matched route github-mention");
  });

  it("says when the delivery waits in the gateway's outbox", async () => {
    gateway.answer = { status: 202, body: { queued: true, delivery: "0196-log-id" } };
    expect(await sendCommand(["github"], { env, print, tasks: queued, signal })).toBe(0);
    expect(lines[1]).toBe(
      "queued in the gateway's outbox as 0196-log-id: the task is made once the tasks service answers",
    );
  });

  it("--follow prints the timeline and the answer, and exits 1 unless the task SUCCEEDED", async () => {
    const succeeded = fakeTasks(taskIn(TaskState.SUCCEEDED, "agent succeeded", "hello from the agent"));
    expect(await sendCommand(["github", "--follow"], { env, print, tasks: succeeded, signal })).toBe(0);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/ #1 RECEIVED github issue_comment delivery d-1$/),
      expect.stringMatching(/ #1 COMPLETED exit 0, 0s, \$0\.0000$/),
      "task task-1  SUCCEEDED: agent succeeded",
      "answer: hello from the agent",
    ]);

    const failed = fakeTasks(taskIn(TaskState.FAILED, "AGENT_COMMAND is not set"));
    expect(await sendCommand(["github", "--follow"], { env, print, tasks: failed, signal })).toBe(1);
    expect(lines.at(-1)).toBe("task task-1  FAILED: AGENT_COMMAND is not set");
  });
});
