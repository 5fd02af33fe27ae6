import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { TaskStage, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { analytics, analyticsRange } from "../src/analytics.js";
import { listAudit, recordAudit } from "../src/audit.js";
import { migrate } from "../src/migrations.js";
import { eventSeq, eventsAfter, getTask, insertEvent, listTasks, upsertTask } from "../src/read-model.js";
import { SignIns } from "../src/sign-in.js";
import { DATABASE_KINDS, type TestDatabase, testDatabase } from "./databases.js";
import { outputEvent, stageEvent, T0, task } from "./fixtures.js";

const NO_FILTERS = { provider: Provider.UNSPECIFIED, state: TaskState.UNSPECIFIED, routeId: "", subject: "", text: "" };
const HOUR = 3_600_000;

describe.each(DATABASE_KINDS)("the read model on %s", (kind) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await testDatabase(kind);
  }, 60_000);
  afterAll(() => t?.close());
  beforeEach(() => t.reset());

  it("migrates once: a second start applies nothing and keeps the data", async () => {
    await upsertTask(t.db, task({ id: "t1" }));
    await migrate(t.db);
    const versions = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM schema_migrations");
    expect(versions[0]?.n).toBe(1);
    expect(await getTask(t.db, "t1")).toBeDefined();
  });

  it("keeps the newest record of a task, whichever order they arrive in, without its raw body", async () => {
    await upsertTask(t.db, task({ id: "t1", state: TaskState.SUCCEEDED, updateMs: T0 + 2000, answer: "done" }));
    await upsertTask(t.db, task({ id: "t1", state: TaskState.RUNNING, updateMs: T0 + 1000 }));
    const stored = await getTask(t.db, "t1");
    expect(stored?.task.state).toBe(TaskState.SUCCEEDED);
    expect(stored?.task.result?.answer).toBe("done");
    expect(stored?.task.event?.rawBody.length).toBe(0);
  });

  it("adds an event once by its id, in the order applied, and resumes after one", async () => {
    const started = stageEvent("e2", TaskStage.STARTED, T0 + 1000, 1);
    expect(await insertEvent(t.db, "t1", stageEvent("e1", TaskStage.QUEUED, T0))).toBe(true);
    expect(await insertEvent(t.db, "t1", started, task({ id: "t1", state: TaskState.RUNNING }))).toBe(true);
    expect(await insertEvent(t.db, "t1", started)).toBe(false);
    await insertEvent(t.db, "t1", outputEvent("e3", "hello", T0 + 1500));
    const all = await eventsAfter(t.db, "t1");
    expect(all.map((e) => e.event.id)).toEqual(["e1", "e2", "e3"]);
    expect(all[1]?.task?.state).toBe(TaskState.RUNNING);
    expect(all[0]?.task).toBeUndefined();
    const after = await eventSeq(t.db, "t1", "e2");
    expect((await eventsAfter(t.db, "t1", after)).map((e) => e.event.id)).toEqual(["e3"]);
    expect(await eventSeq(t.db, "t1", "nope")).toBeUndefined();
  });

  it("lists newest first with each filter, pages and a total", async () => {
    await upsertTask(
      t.db,
      task({
        id: "a1",
        provider: Provider.GITHUB,
        state: TaskState.SUCCEEDED,
        routeId: "r1",
        subjectKey: "github:octo/hello#12",
        title: "Crash on start",
        prompt: "Fix the crash",
        answer: "Patched",
      }),
    );
    await upsertTask(
      t.db,
      task({
        id: "a2",
        provider: Provider.SLACK,
        state: TaskState.FAILED,
        routeId: "r2",
        subjectKey: "slack:C1",
        text: "please look at the LOGIN page",
      }),
    );
    await upsertTask(
      t.db,
      task({
        id: "a3",
        provider: Provider.GITHUB,
        state: TaskState.QUEUED,
        routeId: "r1",
        subjectKey: "github:octo/hello#13",
        title: "Docs",
      }),
    );
    const ids = async (filters: Partial<typeof NO_FILTERS>) =>
      (await listTasks(t.db, { ...NO_FILTERS, ...filters }, 50, undefined)).tasks.map((x) => x.id);
    expect(await ids({})).toEqual(["a3", "a2", "a1"]);
    expect(await ids({ provider: Provider.GITHUB })).toEqual(["a3", "a1"]);
    expect(await ids({ state: TaskState.FAILED })).toEqual(["a2"]);
    expect(await ids({ routeId: "r1" })).toEqual(["a3", "a1"]);
    expect(await ids({ subject: "OCTO/HELLO" })).toEqual(["a3", "a1"]);
    expect(await ids({ subject: "crash" })).toEqual(["a1"]);
    expect(await ids({ text: "login" })).toEqual(["a2"]);
    expect(await ids({ text: "patched" })).toEqual(["a1"]);
    expect(await ids({ text: "50%_" })).toEqual([]);
    const first = await listTasks(t.db, NO_FILTERS, 2, undefined);
    expect(first).toMatchObject({ more: true, total: 3 });
    const second = await listTasks(t.db, NO_FILTERS, 2, first.tasks.at(-1)?.id);
    expect(second.tasks.map((x) => x.id)).toEqual(["a1"]);
    expect(second.more).toBe(false);
  });

  it("computes the analytics over the range", async () => {
    const day2 = T0 + 24 * HOUR;
    await upsertTask(
      t.db,
      task({
        id: "b1",
        state: TaskState.SUCCEEDED,
        createMs: T0,
        leasedMs: T0 + 1000,
        routeId: "r1",
        repository: "octo/hello",
        subjectKey: "github:octo/hello#1",
        title: "One",
        costUsd: 0.5,
      }),
    );
    await upsertTask(
      t.db,
      task({
        id: "b2",
        state: TaskState.FAILED,
        createMs: T0 + 10 * 60_000,
        leasedMs: T0 + 10 * 60_000 + 3000,
        routeId: "r1",
        repository: "octo/hello",
        subjectKey: "github:octo/hello#1",
        costUsd: 0.25,
      }),
    );
    await upsertTask(
      t.db,
      task({
        id: "b3",
        state: TaskState.QUEUED,
        provider: Provider.SLACK,
        createMs: day2,
        routeId: "r2",
        subjectKey: "slack:C1",
      }),
    );
    await upsertTask(t.db, task({ id: "old", state: TaskState.SUCCEEDED, createMs: T0 - 30 * 24 * HOUR, costUsd: 9 }));
    await insertEvent(t.db, "b1", stageEvent("s", TaskStage.STARTED, T0 + 2000, 1));
    await insertEvent(t.db, "b1", stageEvent("c", TaskStage.COMPLETED, T0 + 12_000, 1));
    await insertEvent(t.db, "b2", stageEvent("s", TaskStage.STARTED, T0 + 600_000, 1));
    await insertEvent(t.db, "b2", stageEvent("f", TaskStage.FAILED, T0 + 630_000, 1));

    const res = await analytics(t.db, analyticsRange(T0 - HOUR, T0 + 3 * 24 * HOUR, 24 * HOUR, 0));
    expect(durationMs(res.bucket!)).toBe(24 * HOUR);
    expect(
      res.tasksOverTime.map((c) => [timestampMs(c.bucketStartTime!), c.provider, c.state, Number(c.count)]),
    ).toEqual([
      [Math.floor(T0 / (24 * HOUR)) * 24 * HOUR, Provider.GITHUB, TaskState.SUCCEEDED, 1],
      [Math.floor(T0 / (24 * HOUR)) * 24 * HOUR, Provider.GITHUB, TaskState.FAILED, 1],
      [Math.floor(day2 / (24 * HOUR)) * 24 * HOUR, Provider.SLACK, TaskState.QUEUED, 1],
    ]);
    expect(res.successRate).toBe(0.5);
    // Queue waits 1s and 3s: percentile_cont interpolates.
    expect(Number(res.queueWait?.count)).toBe(2);
    expect(durationMs(res.queueWait!.p50!)).toBe(2000);
    expect(durationMs(res.queueWait!.p90!)).toBe(2800);
    // Runs of 10s and 30s.
    expect(Number(res.runDuration?.count)).toBe(2);
    expect(durationMs(res.runDuration!.p50!)).toBe(20_000);
    expect(res.costPerDay.map((c) => [c.key, c.costUsd, Number(c.tasks)])).toEqual([
      ["2026-11-20", 0.75, 2],
      ["2026-11-21", 0, 1],
    ]);
    expect(res.costByRoute.map((c) => [c.key, c.costUsd])).toEqual([
      ["r1", 0.75],
      ["r2", 0],
    ]);
    expect(res.costByRepository.map((c) => [c.key, c.costUsd, Number(c.inputTokens)])).toEqual([
      ["octo/hello", 0.75, 200],
    ]);
    expect(res.busiestSubjects.map((s) => [s.subjectKey, s.title, Number(s.count)])).toEqual([
      ["github:octo/hello#1", "One", 2],
      ["slack:C1", "", 1],
    ]);
  });

  it("answers empty analytics for an empty range", async () => {
    const res = await analytics(t.db, analyticsRange(undefined, undefined, undefined, T0));
    expect(res).toMatchObject({ successRate: 0, tasksOverTime: [], costPerDay: [] });
    expect(Number(res.queueWait?.count)).toBe(0);
    expect(durationMs(res.bucket!)).toBe(24 * HOUR);
  });

  it("uses a sign-in link once, before it expires, and ends sessions", async () => {
    let now = T0;
    const signIns = new SignIns(t.db, { signInTtlMs: 60_000, sessionTtlMs: HOUR, now: () => now });
    const link = await signIns.createLink("ana");
    const redeemed = await signIns.redeem(link.token);
    expect(redeemed?.session.actor).toBe(`operator "ana" (signed in ${new Date(T0).toISOString()})`);
    expect(await signIns.redeem(link.token)).toBeUndefined();
    expect(await signIns.session(redeemed!.sessionId)).toMatchObject({ actor: redeemed!.session.actor });

    const late = await signIns.createLink("bob");
    now += 60_001;
    expect(await signIns.redeem(late.token)).toBeUndefined();
    expect(await signIns.redeem("made-up")).toBeUndefined();

    now = T0 + HOUR + 1;
    expect(await signIns.session(redeemed!.sessionId)).toBeUndefined();
    now = T0;
    await signIns.end(redeemed!.sessionId);
    expect(await signIns.session(redeemed!.sessionId)).toBeUndefined();
    // Only hashes are stored.
    const stored = await t.db.query<{ token_hash: string }>("SELECT token_hash FROM sign_ins");
    expect(stored.map((r) => r.token_hash)).not.toContain(link.token);
  });

  it("gives a link raced by two browsers to one of them", async () => {
    const signIns = new SignIns(t.db, { signInTtlMs: 60_000, sessionTtlMs: HOUR });
    const link = await signIns.createLink("ana");
    const results = await Promise.all([signIns.redeem(link.token), signIns.redeem(link.token)]);
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
  });

  it("pages the audit log newest first", async () => {
    for (const target of ["t1", "t2", "t3"]) {
      await recordAudit(t.db, { actor: "operator", action: "RetryTask", target, outcome: "OK", detail: "" });
    }
    const first = await listAudit(t.db, 2, undefined);
    expect(first.entries.map((e) => e.target)).toEqual(["t3", "t2"]);
    const second = await listAudit(t.db, 2, Number(first.entries.at(-1)?.id));
    expect(second.entries.map((e) => e.target)).toEqual(["t1"]);
    expect(second.more).toBe(false);
  });
});
