import type { ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLogger } from "@hookmesh/kit";
import { startService, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  ActorSchema,
  EventSchema,
  GitHubSubjectSchema,
  Provider,
  SubjectSchema,
} from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { type Task, TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";

const checkout = fileURLToPath(new URL("../", import.meta.url));
const escapeAgent = fileURLToPath(new URL("../services/agent/test/fixtures/escape-agent.mjs", import.meta.url));
const WORKER_SECRET = `worker-secret-${randomBytes(6).toString("hex")}`;
const CA_KEY = `ca-private-key-${randomBytes(6).toString("hex")}`;

/**
 * A real worker process under the sandbox defaults (only the escape agent's directory added
 * read-only) runs an agent that tries to get out: to the worker's environment and every
 * process's, the keys under HOOKMESH_HOME, the checkout, Redis and the tasks service's port.
 */
describe("an escaping agent under the worker's default sandbox", () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let client: Client<typeof TaskService>;
  let home: string;
  let worker: ChildProcess;
  const marker = `escape-${randomBytes(6).toString("hex")}`;

  beforeAll(async () => {
    db = await testRedis("agent-sandbox");
    tasks = await startTasks(db, createLogger({ service: "tasks", level: "silent" }));
    await tasks.routingRules.upsert(
      create(RouteSchema, {
        id: "escape",
        provider: Provider.GITHUB,
        eventTypes: ["issue_comment"],
        trigger: { kind: { case: "mention", value: { mention: "" } } },
        priority: 900,
        profile: { runner: "command" },
      }),
    );
    client = createClient(TaskService, createGrpcTransport({ baseUrl: tasks.url }));
    // Outside /tmp, which in the sandbox is a fresh one of its own: a write there would land in it.
    home = mkdtempSync(join(checkout, ".hookmesh-escape-home-"));
    mkdirSync(join(home, "tls"));
    writeFileSync(join(home, "tls", "ca.key"), CA_KEY);
    const targets = {
      environ: true,
      read: [join(home, "tls", "ca.key"), join(checkout, "package.json")],
      write: [join(checkout, marker), join(home, marker)],
      connect: [
        ["127.0.0.1", 6379],
        ["127.0.0.1", tasks.port],
      ],
    };
    worker = startService("@hookmesh/agent", {
      // Cleartext on loopback, as the tasks service here; the sandbox is what is under test.
      HOOKMESH_INSECURE: "1",
      HOOKMESH_HOME: home,
      TASKS_URL: tasks.url,
      AGENT_ID: `worker-${randomUUID().slice(0, 8)}`,
      AGENT_PORT: "0",
      AGENT_RUNNER: "command",
      AGENT_COMMAND: `node ${escapeAgent} '${JSON.stringify(targets)}'`,
      AGENT_SANDBOX_READONLY_PATHS: dirname(escapeAgent),
      AGENT_WORKDIR: join(home, "runs"),
      WORKER_SECRET,
      LOG_LEVEL: "warn",
    });
  });

  afterAll(async () => {
    if (worker && worker.exitCode === null) {
      worker.kill("SIGTERM");
      await once(worker, "exit");
    }
    await tasks?.close();
    await db?.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  it("fails every attempt, and nothing is written on the host", { timeout: 60_000 }, async () => {
    const { task } = await client.submitEvent({
      event: create(EventSchema, {
        provider: Provider.GITHUB,
        deliveryId: randomUUID(),
        eventType: "issue_comment",
        action: "created",
        actor: create(ActorSchema, { id: "1", login: "octocat", association: "OWNER" }),
        subject: create(SubjectSchema, {
          key: "github:octo/repo#1",
          ref: { case: "github", value: create(GitHubSubjectSchema, { owner: "octo", repo: "repo" }) },
        }),
        text: "@hookmesh get out",
      }),
    });
    const done = await vi.waitFor(
      async () => {
        const found = (await client.getTask({ id: task!.id })).task!;
        if (found.state !== TaskState.SUCCEEDED) throw new Error(`task is ${TaskState[found.state]}`);
        return found as Task;
      },
      { timeout: 45_000, interval: 100 },
    );
    const lines = done.result!.answer.split("\n");
    const pids = lines
      .find((line) => line.startsWith("processes "))!
      .slice("processes ".length)
      .split(",");
    // The sandbox's init, the shell and node: not the worker, not the tasks service, not Redis.
    expect(pids.length).toBeLessThanOrEqual(4);
    for (const secret of [WORKER_SECRET, CA_KEY]) expect(done.result!.answer).not.toContain(secret);
    const attempts = lines.filter((line) => /^(read|write|connect) /.test(line));
    expect(attempts).toHaveLength(2 + 2 + 2);
    // Only a write under /tmp (when the checkout is there) may seem to work: the sandbox has a
    // /tmp of its own, gone with the run; the host's files are checked below.
    for (const line of attempts.filter((line) => !/: blocked /.test(line))) {
      expect(line.startsWith(`write ${tmpdir()}/`)).toBe(true);
    }
    expect(existsSync(join(checkout, marker))).toBe(false);
    expect(existsSync(join(home, marker))).toBe(false);
  });
});
