/**
 * The load generator of bench/ingest.ts, in a process of its own so that sending does not
 * share an event loop with what is measured. It answers each phase the parent asks for (over
 * the IPC channel) with the counts and latencies of the signed GitHub deliveries it sent:
 *
 * - closed: `senders` concurrent senders for `seconds`, each sending its next request when its
 *   last is answered (the throughput at saturation; latency from each request's send);
 * - open: `rate` requests a second for `seconds` whatever the answers (latency from each
 *   request's scheduled time, so that a target falling behind shows).
 *
 * Every body is distinct (its own issue number) and signed, with its own delivery id. With
 * `track`, the answer also lists each acknowledged request's task id and the wall-clock time it
 * was sent, for the delivery → QUEUED latency the parent reads from the tasks service.
 */
import { randomUUID } from "node:crypto";
import * as http from "node:http";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import { signGitHub } from "@hookmesh/kit/testing";

export interface LoadPhase {
  /** Where to send; several (comma-separated), each sender or each request takes the next in turn. */
  url: string;
  mode: "closed" | "open";
  seconds: number;
  senders?: number;
  rate?: number;
  /** List the task id of each acknowledged request with its send time (`LoadResult.tracked`). */
  track?: boolean;
}

export interface LoadResult {
  sent: number;
  acknowledged: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Answers by kind: `queued` (in the outbox), `task` (made before the answer), or `http <status>`, `error`. */
  replies: Record<string, number>;
  /** The size of each body sent. */
  payloadBytes: number;
  /** Open loop: how late the generator sent, p99 (large when it could not keep up). */
  sendLagMsP99?: number;
  /** With `track`: [task id, send time in ms since the epoch] of each acknowledged request. */
  tracked?: Array<[taskId: string, sentAt: number]>;
}

const secret = process.env.BENCH_SECRET ?? "bench-webhook-secret";
type Payload = { issue: Record<string, unknown>; comment: Record<string, unknown> } & Record<string, unknown>;
const examples = createRequire(import.meta.url)("@octokit/webhooks-examples") as {
  name: string;
  examples: Payload[];
}[];
const example = examples.find((d) => d.name === "issue_comment")!.examples.find((p) => p.action === "created")!;
const template = JSON.stringify({
  ...example,
  issue: { ...example.issue, number: 987654321 },
  comment: { ...example.comment, body: "@hookmesh can you take a look at this? Grüße 👋" },
});
const [bodyHead, bodyTail] = template.split("987654321") as [string, string];
/** Distinct across runs too, so that a previous run's duplicate claims never match. */
const runBase = Date.now() % 1_000_000_000;
let sequence = 0;

function send(
  url: string,
  agent: http.Agent,
  replies: Record<string, number>,
  tracked?: Array<[string, number]>,
): Promise<number> {
  const n = ++sequence;
  const sentAt = Date.now();
  const body = Buffer.from(`${bodyHead}${runBase}${String(n).padStart(7, "0")}${bodyTail}`);
  return new Promise((resolve) => {
    const count = (kind: string) => {
      replies[kind] = (replies[kind] ?? 0) + 1;
    };
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": body.length,
          "user-agent": "GitHub-Hookshot/bench",
          "x-github-event": "issue_comment",
          "x-github-delivery": randomUUID(),
          "x-github-hook-id": "4242",
          "x-hub-signature-256": signGitHub(body, secret),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString();
          count(status !== 202 ? `http ${status}` : text.includes('"queued":true') ? "queued" : "task");
          if (status === 202 && tracked) tracked.push([(JSON.parse(text) as { task_id: string }).task_id, sentAt]);
          resolve(status);
        });
        res.on("error", () => {
          count("error");
          resolve(0);
        });
      },
    );
    req.on("error", () => {
      count("error");
      resolve(0);
    });
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round = (n: number) => Math.round(n * 100) / 100;

function summarize(latencies: number[], statuses: number[], seconds: number, replies: Record<string, number>) {
  const ok = latencies.filter((_, i) => statuses[i] === 202).sort((a, b) => a - b);
  return {
    sent: statuses.length,
    acknowledged: ok.length,
    perSecond: round(ok.length / seconds),
    latencyMs: { p50: round(percentile(ok, 50)), p99: round(percentile(ok, 99)), max: round(ok.at(-1) ?? Number.NaN) },
    replies,
    payloadBytes: Buffer.byteLength(`${bodyHead}${runBase}0000000${bodyTail}`),
  };
}

async function closed({ url, seconds, senders = 32, track }: LoadPhase): Promise<LoadResult> {
  const urls = url.split(",");
  const agent = new http.Agent({ keepAlive: true, maxSockets: senders });
  const tracked: Array<[string, number]> | undefined = track ? [] : undefined;
  const latencies: number[] = [];
  const statuses: number[] = [];
  const replies: Record<string, number> = {};
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: senders }, async (_, sender) => {
      while (performance.now() < stopAt) {
        const sentAt = performance.now();
        const status = await send(urls[sender % urls.length]!, agent, replies, tracked);
        latencies.push(performance.now() - sentAt);
        statuses.push(status);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  return { ...summarize(latencies, statuses, elapsed, replies), ...(tracked && { tracked }) };
}

async function open({ url, seconds, rate = 1000, track }: LoadPhase): Promise<LoadResult> {
  const urls = url.split(",");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const tracked: Array<[string, number]> | undefined = track ? [] : undefined;
  const count = Math.round(rate * seconds);
  const latencies: number[] = new Array(count).fill(Number.NaN);
  const statuses: number[] = new Array(count).fill(0);
  const lags: number[] = [];
  const replies: Record<string, number> = {};
  const pending: Promise<void>[] = [];
  const start = performance.now();
  let i = 0;
  while (i < count) {
    // Sends every request that is due, then sleeps until the next: timers fire in whole
    // milliseconds, so at 1,000/s and above several go out per wake-up.
    const now = performance.now();
    while (i < count && start + (i * 1000) / rate <= now) {
      const due = start + (i * 1000) / rate;
      const index = i++;
      lags.push(now - due);
      pending.push(
        send(urls[index % urls.length]!, agent, replies, tracked).then((status) => {
          statuses[index] = status;
          latencies[index] = performance.now() - due;
        }),
      );
    }
    if (i < count) await sleep(Math.max(0, start + (i * 1000) / rate - performance.now()));
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  return {
    ...summarize(latencies, statuses, elapsed, replies),
    sendLagMsP99: round(
      percentile(
        lags.sort((a, b) => a - b),
        99,
      ),
    ),
    ...(tracked && { tracked }),
  };
}

process.on("message", (phase: LoadPhase) => {
  (phase.mode === "closed" ? closed(phase) : open(phase)).then(
    (result) => process.send!({ result }),
    (err: unknown) => process.send!({ error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on("disconnect", () => process.exit(0));
