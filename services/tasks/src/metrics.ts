import { Counter, Histogram, type Logger, type ServiceMetrics, scrapedGauge } from "@hookmesh/kit";
import { TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskObserver } from "./engine.js";
import type { RoutingRuleStore } from "./routing/routing-rule-store.js";
import type { TaskStore } from "./task-store.js";
import type { WorkQueue } from "./work-queue.js";

/** Every state a task can be in, as the `state` label spells it (lower case). */
const STATES = Object.values(TaskState).filter(
  (state): state is TaskState => typeof state === "number" && state !== TaskState.UNSPECIFIED,
);

const stateLabel = (state: TaskState) => TaskState[state].toLowerCase();

/** Seconds a task waits in the queue: immediate when a worker is idle, up to hours behind a backlog. */
const WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600];

/**
 * The tasks service's own metrics on its registry: submissions, leases, lease expirations and
 * ended tasks as the engine reports them, and, read from Redis when Prometheus scrapes, the
 * tasks in each state and the queue's depth by route priority.
 */
export function tasksMetrics(
  metrics: ServiceMetrics,
  sources: { store: TaskStore; queue: WorkQueue; routingRules: RoutingRuleStore },
  logger: Logger,
): TaskObserver {
  const { registry } = metrics;
  const registers = [registry];
  const submitted = new Counter({
    name: "hookmesh_tasks_submitted_total",
    help: "Events submitted, by outcome: queued (a task to run), ignored (no routing rule wanted it), duplicate.",
    labelNames: ["outcome"],
    registers,
  });
  const leases = new Counter({
    name: "hookmesh_tasks_leases_granted_total",
    help: "Leases granted to workers (each attempt of a task).",
    registers,
  });
  const expired = new Counter({
    name: "hookmesh_tasks_leases_expired_total",
    help: "Leases lost because their worker stopped heartbeating.",
    registers,
  });
  const ended = new Counter({
    name: "hookmesh_tasks_ended_total",
    help: "Tasks that reached a final state (succeeded, failed, dead, canceled).",
    labelNames: ["state"],
    registers,
  });
  const budgetDeferred = new Counter({
    name: "hookmesh_tasks_budget_deferred_total",
    help: "Leases refused because the task's routing rule has spent its daily budget (the task waits), by routing rule.",
    labelNames: ["route"],
    registers,
  });
  const queueWait = new Histogram({
    name: "hookmesh_tasks_queue_wait_seconds",
    help: "Time from a task's queuing (its submission, for a first attempt; its retry, after) to its lease.",
    buckets: WAIT_BUCKETS,
    registers,
  });
  scrapedGauge({
    name: "hookmesh_tasks",
    help: "Tasks kept (within their retention) in each state.",
    labelNames: ["state"],
    registry,
    logger,
    read: async () => {
      const counts = await sources.store.countByState(STATES);
      return [...counts].map(([state, value]) => ({ labels: { state: stateLabel(state) }, value }));
    },
  });
  scrapedGauge({
    name: "hookmesh_tasks_queue_depth",
    help: "Tasks in the queue: ready to run by route priority (state=ready; priority=other for a priority no routing rule has now), or delayed by a retry's backoff, a busy subject or a spent budget (state=delayed).",
    labelNames: ["state", "priority"],
    registry,
    logger,
    read: async () => {
      const priorities = [...new Set((await sources.routingRules.list()).map((rule) => rule.priority))];
      const { ready, other, delayed } = await sources.queue.depth(priorities);
      return [
        ...[...ready].map(([priority, value]) => ({ labels: { state: "ready", priority: String(priority) }, value })),
        { labels: { state: "ready", priority: "other" }, value: other },
        { labels: { state: "delayed" }, value: delayed },
      ];
    },
  });
  return {
    submitted: (outcome) => submitted.inc({ outcome }),
    leased(queuedSeconds) {
      leases.inc();
      queueWait.observe(queuedSeconds);
    },
    leaseExpired: () => expired.inc(),
    ended: (state) => ended.inc({ state: stateLabel(state) }),
    budgetSpent: (route) => budgetDeferred.inc({ route }),
  };
}
