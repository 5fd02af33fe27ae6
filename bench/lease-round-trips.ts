/**
 * Redis commands and round trips per submission, lease, heartbeat and completion of one task (issue 11),
 * counted, not timed: latency follows the round trips, so this measures them on an idle
 * service where a stopwatch would measure the machine.
 *
 * The tasks service is composed as production composes it (its store connection and the
 * work queue's), in this process; every command any ioredis connection of the process sends
 * is counted by name while one operation runs. A round trip is a wave of commands: one sent
 * while nothing is in flight starts a wave, and those sent before every reply is back join it,
 * so commands sent together (a pipeline, or calls made at once) count once and awaited ones in
 * turn each count. Each task has its own subject and its run costs a cent of a rule with the
 * default daily budget, so every lease is granted and every completion counts its spend.
 *
 *   npx tsx bench/lease-round-trips.ts [label]   (Redis from REDIS_URL; results under `label`,
 *   default "current", in bench/results/lease-round-trips.json)
 */
import { randomUUID } from "node:crypto";
import { loadavg } from "node:os";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createLogger } from "@hookmesh/kit";
import { composeTasks, loadConfig } from "@hookmesh/tasks";
import { type Command, Redis } from "ioredis";
import { ActorSchema, EventSchema, Provider, SubjectSchema } from "../gen/hookmesh/events/v1/event_pb.js";
import { RouteSchema } from "../gen/hookmesh/tasks/v1/route_pb.js";
import { RunOutcome, TaskResultSchema } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { machineFacts, recordRun } from "./processes.js";
import { BENCH_TASKS_ENV } from "./settings.js";

const TASKS = 5;
/**
 * Long enough that the queue's stalled-job check (every quarter lease) and the retention sweep
 * send nothing while an operation is counted.
 */
const LEASE_MS = 600_000;

const label = process.argv[2] ?? "current";
const loadBefore = loadavg();
const prefix = `hookmesh-bench:lease-round-trips:${randomUUID()}:`;
const logger = createLogger({ service: "bench", level: "warn" });

interface Count {
  commands: Record<string, number>;
  total: number;
  roundTrips: number;
}

let counting: Count | undefined;
let inFlight = 0;
const send = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function (this: Redis, command: Command, ...rest: unknown[]) {
  if (counting) {
    if (inFlight === 0) counting.roundTrips++;
    counting.commands[command.name] = (counting.commands[command.name] ?? 0) + 1;
    counting.total++;
    inFlight++;
    const settled = () => inFlight--;
    command.promise.then(settled, settled);
  }
  return (send as (...args: unknown[]) => unknown).call(this, command, ...rest) as ReturnType<typeof send>;
};

async function counted<T>(operation: () => Promise<T>): Promise<{ value: T; count: Count }> {
  counting = { commands: {}, total: 0, roundTrips: 0 };
  try {
    const value = await operation();
    return { value, count: counting };
  } finally {
    counting = undefined;
  }
}

const tasks = await composeTasks(
  loadConfig({
    ...BENCH_TASKS_ENV,
    REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    TASKS_REDIS_PREFIX: prefix,
    TASKS_LEASE_MS: String(LEASE_MS),
  }),
  { logger, env: {} },
);
await tasks.routingRules.upsert(
  create(RouteSchema, {
    id: "bench",
    provider: Provider.GITHUB,
    trigger: { kind: { case: "mention", value: { mention: "" } } },
    priority: 500,
    profile: { runner: "command", maxRunTime: durationFromMs(60_000) },
  }),
);

type Operation = "submit" | "lease" | "heartbeat" | "complete";
const perTask: Record<Operation, Count>[] = [];
const never = new AbortController().signal;
for (let i = 0; i < TASKS; i++) {
  const submit = await counted(() =>
    tasks.engine.submit(
      create(EventSchema, {
        provider: Provider.GITHUB,
        deliveryId: randomUUID(),
        eventType: "issue_comment",
        action: "created",
        actor: create(ActorSchema, { login: "bench", association: "OWNER" }),
        subject: create(SubjectSchema, { key: `github:bench/lease#${i}` }),
        text: "@hookmesh run",
      }),
    ),
  );
  const lease = await counted(() => tasks.engine.lease("bench-worker", 1, 0, never));
  const [grant] = lease.value;
  if (!grant) throw new Error("the submitted task was not leased");
  const heartbeat = await counted(() => tasks.engine.heartbeat(grant.task.id, grant.leaseId));
  const complete = await counted(() =>
    tasks.engine.complete(
      grant.task.id,
      grant.leaseId,
      create(TaskResultSchema, { outcome: RunOutcome.SUCCEEDED, exitCode: 0, costUsd: 0.01 }),
    ),
  );
  perTask.push({ submit: submit.count, lease: lease.count, heartbeat: heartbeat.count, complete: complete.count });
}

const keys = await tasks.redis.keys(`${prefix}*`);
if (keys.length > 0) await tasks.redis.unlink(...keys);
await tasks.close();

/** One operation's count, the same for every task (the counts are deterministic), or every task's if they differ. */
function summarize(operation: Operation) {
  const counts = perTask.map((task) => task[operation]);
  const same = counts.every((count) => JSON.stringify(count) === JSON.stringify(counts[0]));
  return same ? counts[0] : { differ: counts };
}

recordRun("lease-round-trips", label, {
  date: new Date().toISOString(),
  machine: machineFacts(loadBefore),
  setup: {
    tasks: TASKS,
    tasksLeaseMs: LEASE_MS,
    note:
      "commands every ioredis connection of the process sent during one call of TaskEngine.submit (a " +
      "matching event), lease (one task ready, granted), heartbeat and complete, on the composed tasks " +
      "service; roundTrips counts waves of " +
      "commands in flight together, which is what latency follows",
  },
  submit: summarize("submit"),
  lease: summarize("lease"),
  heartbeat: summarize("heartbeat"),
  complete: summarize("complete"),
});
process.exit(0);
