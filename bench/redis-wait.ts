/**
 * What `REDIS_WAIT_REPLICAS=1` costs a delivery on a Redis Cluster (3 masters, 3 replicas,
 * started here on loopback): the gateway and the tasks service in this process, signed GitHub
 * mentions sent one at a time and 16 at a time, with and without the wait. Each run has its
 * own hash-tagged prefixes on the same cluster. Writes `results/redis-wait.json`.
 *
 *   npx tsx bench/redis-wait.ts
 */
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { startGateway, TEST_SECRETS } from "@hookmesh/gateway/testing";
import { createLogger } from "@hookmesh/kit";
import { signGitHub, startRedisCluster } from "@hookmesh/kit/testing";
import { startTasks } from "@hookmesh/tasks/testing";

const COUNT = Number(process.env.BENCH_DELIVERIES ?? 400);
const logger = createLogger({ service: "bench", level: "silent" });

interface Figures {
  waitReplicas: number;
  concurrency: number;
  deliveries: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

const cluster = await startRedisCluster();
const results: Figures[] = [];
try {
  for (const waitReplicas of [0, 1]) {
    const run = randomUUID().slice(0, 8);
    const env = { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_WAIT_REPLICAS: String(waitReplicas) };
    const tasks = await startTasks({ prefix: "unused:" }, logger, {
      env: { ...env, TASKS_REDIS_PREFIX: `{bench-${run}:tasks}:` },
    });
    const gateway = await startGateway({ prefix: "unused:" }, tasks.url, logger, {
      ...env,
      GATEWAY_REDIS_PREFIX: `{bench-${run}:gateway}:`,
    });
    try {
      await deliverAll(gateway.base, 50, 4); // warm-up: connections, scripts, the JIT
      for (const concurrency of [1, 16]) {
        const figures = await deliverAll(gateway.base, COUNT, concurrency);
        results.push({ waitReplicas, concurrency, ...figures });
        console.info(JSON.stringify(results.at(-1)));
      }
      await gateway.forwarded(60_000);
    } finally {
      await gateway.close();
      await tasks.close();
    }
  }
} finally {
  await cluster.stop();
}
writeFileSync(
  join(import.meta.dirname, "results", "redis-wait.json"),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, load: loadavg(), results }, null, 2)}\n`,
);

async function deliverAll(
  base: string,
  count: number,
  concurrency: number,
): Promise<Omit<Figures, "waitReplicas" | "concurrency">> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        const id = randomUUID();
        const body = JSON.stringify({
          action: "created",
          issue: { number: 7, title: "Flaky test" },
          comment: { id: 99, body: `@hookmesh look ${id}`, author_association: "OWNER" },
          repository: { name: "repo", owner: { login: "octo" } },
          sender: { id: 1, login: "octocat", type: "User" },
        });
        const sent = performance.now();
        const res = await fetch(`${base}/webhooks/github`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-github-event": "issue_comment",
            "x-github-delivery": id,
            "x-github-hook-id": "1",
            "x-hub-signature-256": signGitHub(body, TEST_SECRETS.github),
          },
          body,
        });
        await res.arrayBuffer();
        if (res.status !== 202) throw new Error(`delivery answered ${res.status}`);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! * 100) / 100;
  return { deliveries: count, perSecond: Math.round(count / seconds), p50Ms: at(0.5), p99Ms: at(0.99) };
}
