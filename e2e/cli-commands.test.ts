import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { freePort, memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Event, EventSchema, Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { TaskEventSchema } from "../gen/hookmesh/tasks/v1/task_pb.js";

const bin = fileURLToPath(new URL("../cli/bin/hookmesh.js", import.meta.url));
const run = promisify(execFile);

/** An owner's comment that mentions hookmesh, which the default rules queue. */
function mention(deliveryId: string): Event {
  return create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId,
    eventType: "issue_comment",
    action: "created",
    text: "@hookmesh fix it",
    actor: { login: "octocat", association: "OWNER" },
    subject: { key: `cli-test:${deliveryId}` },
    rawBody: new TextEncoder().encode("{}"),
  });
}

/**
 * The tests hold leases as a worker would but send no heartbeats while CLI processes start,
 * which takes seconds each on a busy machine: longer than the test default's 5 s lease.
 */
const LONG_LEASE = { TASKS_LEASE_MS: "120000" };

const output = (text: string) => create(TaskEventSchema, { kind: { case: "output", value: { text } } });

/** The lines a child prints on stdout, one at a time, as they come. */
function lines(child: ChildProcess): AsyncIterator<string> {
  return createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
}

// Each CLI process starts Node and tsx: a test running a dozen needs more than the default 20 s on a busy machine.
// Against a tasks service of the test's own (cleartext on loopback, as its tests run it): the
// commands' flags, pages, help, rule files and streams. cli.test.ts runs them under mTLS.
describe("hookmesh tasks, routes: flags, pages, help, files and streams", { timeout: 90_000 }, () => {
  let db: TestRedis;
  let tasks: RunningTasks;
  let port: number;
  let home: string;
  let env: NodeJS.ProcessEnv;
  const taskIds: string[] = [];
  const hookmesh = (...args: string[]) => run(process.execPath, [bin, ...args], { env });

  /** A new task, leased as a worker would (taking, and keeping, the older queued ones on the way). */
  async function leased(deliveryId: string) {
    const { task } = await tasks.engine.submit(mention(deliveryId));
    const grants = await tasks.engine.lease("cli-test-worker", 10, 0, AbortSignal.timeout(5_000));
    const grant = grants.find((g) => g.task.id === task.id);
    if (!grant) throw new Error(`task ${task.id} was not leased`);
    return { task, grant };
  }

  beforeAll(async () => {
    db = await testRedis("cli-commands");
    port = await freePort();
    tasks = await startTasks(db, memoryLogger("tasks").logger, { port, env: LONG_LEASE });
    home = mkdtempSync(join(tmpdir(), "hookmesh-cli-commands-"));
    env = { ...process.env, HOOKMESH_HOME: home, HOOKMESH_INSECURE: "1", TASKS_URL: tasks.url };
    for (const n of [1, 2, 3]) taskIds.unshift((await tasks.engine.submit(mention(`paging-${n}`))).task.id);
  });

  afterAll(async () => {
    await tasks?.close();
    await db?.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  it("lists a page at a time, saying how to get the next one, or every page with --all", async () => {
    const first = (await hookmesh("tasks", "list", "--page-size", "2")).stdout.trimEnd().split("\n");
    expect(first).toHaveLength(3);
    expect(first.slice(0, 2).map((line) => line.split(" ")[0])).toEqual(taskIds.slice(0, 2));
    const [, next] = /^next page: hookmesh (tasks list --page-size 2 --page-token \S+)$/.exec(first[2]!)!;
    const second = (await hookmesh(...next!.split(" "))).stdout.trimEnd().split("\n");
    expect(second.map((line) => line.split(" ")[0])).toEqual([taskIds[2]]);

    const page = JSON.parse((await hookmesh("tasks", "list", "--page-size", "2", "--json")).stdout);
    expect(page.tasks.map((t: { id: string }) => t.id)).toEqual(taskIds.slice(0, 2));
    expect(page.tasks[0]).toMatchObject({ state: "TASK_STATE_QUEUED", event: { provider: "PROVIDER_GITHUB" } });
    const rest = JSON.parse(
      (await hookmesh("tasks", "list", "--page-size", "2", "--page-token", page.nextPageToken, "--json")).stdout,
    );
    expect(rest.tasks.map((t: { id: string }) => t.id)).toEqual([taskIds[2]]);
    expect(rest.nextPageToken).toBeUndefined();

    const all = JSON.parse((await hookmesh("tasks", "list", "--all", "--page-size", "1", "--json")).stdout);
    expect(all.tasks.map((t: { id: string }) => t.id)).toEqual(taskIds);
    expect(all.nextPageToken).toBeUndefined();
    const allText = (await hookmesh("tasks", "list", "--all", "--page-size", "1")).stdout.trimEnd().split("\n");
    expect(allText.map((line) => line.split(" ")[0])).toEqual(taskIds);
  });

  it("prints the response message as protobuf JSON with --json", async () => {
    const got = JSON.parse((await hookmesh("tasks", "get", taskIds[0]!, "--json")).stdout);
    expect(got).toMatchObject({ task: { id: taskIds[0], state: "TASK_STATE_QUEUED" } });
    const routes = JSON.parse((await hookmesh("routes", "list", "--json")).stdout);
    expect(routes.routes).toContainEqual(
      expect.objectContaining({ id: "github-mention", provider: "PROVIDER_GITHUB" }),
    );
    const route = JSON.parse((await hookmesh("routes", "get", "github-mention", "--json")).stdout);
    expect(route).toMatchObject({ route: { id: "github-mention", trigger: { mention: {} } } });
  });

  it("explains every command with --help, and refuses an unknown flag with exit 2 naming it", async () => {
    const { stdout: top } = await hookmesh("--help");
    for (const command of ["status", "tasks list", "routes list | get ID | upsert -f FILE", "agents list | drain"]) {
      expect(top).toContain(command);
    }
    const { stdout: group } = await hookmesh("tasks", "--help");
    expect(group).toMatch(/^usage: hookmesh tasks <command>$/m);
    for (const sub of ["list", "get", "tail", "cancel", "retry"])
      expect(group).toMatch(new RegExp(`^ {2}tasks ${sub} `, "m"));
    const { stdout: list } = await hookmesh("tasks", "list", "--help");
    expect(list).toMatch(/^usage: hookmesh tasks list \[--state S\]/m);
    expect(list).toMatch(/^ {2}--page-size VALUE +how many per page/m);
    expect(list).toMatch(/^example:\n {2}hookmesh tasks list /m);
    const { stdout: upsert } = await hookmesh("routes", "upsert", "--help");
    expect(upsert).toMatch(/^usage: hookmesh routes upsert -f FILE/m);
    for (const command of [
      "start",
      "status",
      "send",
      "certs",
      "token",
      "redis-acl",
      "deliveries list",
      "agents drain",
      "dashboard",
    ]) {
      const { stdout } = await hookmesh(...command.split(" "), "--help");
      expect(stdout).toMatch(new RegExp(`^usage: hookmesh ${command}\\b[\\s\\S]*\nexample:\n {2}\\S`));
    }

    await expect(hookmesh("tasks", "list", "--colour", "red")).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining("Unknown option '--colour'"),
    });
    await expect(hookmesh("routes", "get")).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining("missing route id"),
    });
    await expect(hookmesh("tasks", "list", "--state", "sleepy")).rejects.toMatchObject({ code: 2 });
    await expect(hookmesh("tasks", "frob")).rejects.toMatchObject({ code: 2 });
    await expect(hookmesh("tasks", "list", "--page-size", "0")).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--page-size: "0" is not a positive whole number'),
    });
  });

  it("upserts rules from a YAML or JSON file, shows the service's refusal with the field, and deletes", async () => {
    const yamlFile = join(home, "rules.yaml");
    writeFileSync(
      yamlFile,
      [
        "# two rules in the shape `routes get` prints",
        "- id: cli-yaml-one",
        "  provider: PROVIDER_GITHUB",
        "  trigger: { mention: {} }",
        "  profile: {}",
        "  priority: 7",
        "- id: cli-yaml-two",
        "  provider: PROVIDER_SLACK",
        "  trigger: { mention: {} }",
        "  gate: { slack: { teamIds: [T0123ABCD] } }",
        "  profile: {}",
        "  priority: 8",
      ].join("\n"),
    );
    expect((await hookmesh("routes", "upsert", "-f", yamlFile)).stdout).toBe(
      "upserted cli-yaml-one\nupserted cli-yaml-two\n",
    );
    const both = JSON.parse((await hookmesh("routes", "upsert", "-f", yamlFile, "--json")).stdout);
    expect(both.map((res: { route: { id: string } }) => res.route.id)).toEqual(["cli-yaml-one", "cli-yaml-two"]);
    const jsonFile = join(home, "rule.json");
    writeFileSync(
      jsonFile,
      JSON.stringify({
        id: "cli-json",
        provider: "PROVIDER_GITHUB",
        trigger: { mention: {} },
        profile: {},
        priority: 9,
      }),
    );
    const upserted = JSON.parse((await hookmesh("routes", "upsert", "-f", jsonFile, "--json")).stdout);
    expect(upserted).toMatchObject({ route: { id: "cli-json", priority: 9 } });
    expect((await hookmesh("routes", "list")).stdout).toMatch(/^cli-yaml-two\s+8\s+slack\s+mention$/m);
    expect(JSON.parse((await hookmesh("routes", "get", "cli-yaml-one")).stdout)).toMatchObject({
      id: "cli-yaml-one",
      priority: 7,
    });

    writeFileSync(
      yamlFile,
      "- { id: cli-yaml-one, provider: PROVIDER_GITHUB, trigger: { mention: {} }, profile: {} }\n- { id: cli-bad, trigger: { mention: {} } }\n",
    );
    await expect(hookmesh("routes", "upsert", "-f", yamlFile)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`${yamlFile}: routes[1].provider: is required (cli-yaml-one stored)`),
    });
    writeFileSync(jsonFile, '{"id": "cli-json", "provider": "PROVIDER_GITHUB", "priority": "high"}');
    await expect(hookmesh("routes", "upsert", "-f", jsonFile)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/rule\.json: route: .*priority/),
    });

    // The README's example rules file, as pasted.
    const readme = readFileSync(fileURLToPath(new URL("../README.md", import.meta.url)), "utf8");
    const [, example] = /e\.g\. with `TASKS_ROUTES_FILE`[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)!;
    writeFileSync(yamlFile, example!);
    expect((await hookmesh("routes", "upsert", "-f", yamlFile)).stdout).toBe(
      "upserted slack-mention\nupserted jira-mention\n",
    );

    expect((await hookmesh("routes", "delete", "cli-json")).stdout).toBe("deleted cli-json\n");
    await expect(hookmesh("routes", "get", "cli-json")).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("NotFound"),
    });
  });

  it("tails a task with event ids, resumes after the last one when the service restarts, and ends with the task", async () => {
    const { task, grant } = await leased("tail-resume");
    await tasks.engine.report(task.id, grant.leaseId, [output("before the restart")]);

    const tail = spawn(process.execPath, [bin, "tasks", "tail", task.id], { env, stdio: ["ignore", "pipe", "pipe"] });
    const exited = once(tail, "exit");
    let stderr = "";
    tail.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const printed: string[] = [];
    const reader = lines(tail);
    while (!printed.at(-1)?.includes("> before the restart")) printed.push((await reader.next()).value);

    await tasks.close();
    tasks = await startTasks(db, memoryLogger("tasks").logger, { port, env: LONG_LEASE });
    await tasks.engine.report(task.id, grant.leaseId, [output("after the restart")]);
    await tasks.engine.complete(task.id, grant.leaseId, undefined);
    for (let line = await reader.next(); !line.done; line = await reader.next()) printed.push(line.value);
    const [code] = await exited;

    expect(code).toBe(0);
    expect(stderr).toMatch(/resuming after event \S+/);
    const ids = printed.map((line) => line.split(" ")[0]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(printed.join("\n")).toMatch(/^\S+ {2}\S+ #0 RECEIVED /m);
    expect(printed.filter((line) => line.includes("> after the restart"))).toHaveLength(1);
    expect(printed.at(-1)).toMatch(/ COMPLETED/);
    // With nothing streamed yet there is no stream to resume: a tasks service that is not there fails at once.
    const unreachable = { ...env, TASKS_URL: `http://127.0.0.1:${await freePort()}` };
    await expect(run(process.execPath, [bin, "tasks", "tail", task.id], { env: unreachable })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("Unavailable"),
    });
    expect(JSON.parse((await hookmesh("tasks", "get", task.id)).stdout).state).toBe("TASK_STATE_SUCCEEDED");
  });

  it("ends quietly, exit 0, when the reader of a tail closes the pipe while the task still runs", async () => {
    const { task, grant } = await leased("tail-epipe");
    const tail = spawn(process.execPath, [bin, "tasks", "tail", task.id], { env, stdio: ["ignore", "pipe", "pipe"] });
    const exited = once(tail, "exit");
    let stderr = "";
    tail.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await lines(tail).next();
    // The reader goes away, as `| head -1` does; the next event meets a closed pipe.
    tail.stdout!.destroy();
    await tasks.engine.report(task.id, grant.leaseId, [output("nobody reads this")]);
    const [code] = await exited;
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    await tasks.engine.complete(task.id, grant.leaseId, undefined);
  });

  it("ends quietly when `tasks list | head -1` and `tasks tail | head -1` close the pipe", async () => {
    const shell = (command: string) =>
      run("sh", ["-c", `"${process.execPath}" "${bin}" ${command} | head -1`], { env });
    const list = await shell("tasks list --all --page-size 1");
    expect(list.stdout).toMatch(/^\S+ {2}\d{4}-\S+ {2}[A-Z]+ +cli-test:\S+\n$/);
    expect(list.stderr).toBe("");
    const { task, grant } = await leased("tail-head");
    await tasks.engine.complete(task.id, grant.leaseId, undefined);
    const tail = await shell(`tasks tail ${task.id} --json`);
    expect(JSON.parse(tail.stdout)).toMatchObject({ event: { stage: { stage: "TASK_STAGE_RECEIVED" } } });
    expect(tail.stderr).toBe("");
  });
});
