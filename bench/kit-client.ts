/**
 * The kit client (breaker, retries, deadline, tracing: kit's createClientFactory) against a raw
 * connect client, for one unary call at a time to a server in a process of its own, in
 * alternating rounds so that what else the machine does weighs on both alike. Per round: each
 * client's p50 and its process CPU per call; the figure is the median of the rounds' p50 ratios.
 * worker-path.ts measures the same in its own process beside the gateway and tasks, where the
 * server's work shares the event loop with the clients'.
 *
 *   npx tsx bench/kit-client.ts                  results under "latest" in bench/results/kit-client.json
 *   BENCH_LABEL=x BENCH_CALLS=2000 BENCH_ROUNDS=8 npx tsx bench/kit-client.ts
 */
import { fork } from "node:child_process";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { type ConnectRouter, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { createClientFactory, createLogger } from "@hookmesh/kit";
import { GitHubService } from "../gen/hookmesh/github/v1/github_pb.js";
import { machineFacts, recordRun } from "./processes.js";

if (process.env.BENCH_KIT_SERVER === "1") {
  // The stand-in GitHub integration: answers GetIssue with an empty issue.
  const routes = (router: ConnectRouter) => router.service(GitHubService, { getIssue: () => ({}) });
  const server = http2.createServer(connectNodeAdapter({ routes }));
  server.listen(0, "127.0.0.1", () => process.send!((server.address() as AddressInfo).port));
  process.on("disconnect", () => process.exit(0));
} else {
  const CALLS = Number(process.env.BENCH_CALLS ?? 2_000);
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
  const loadBefore = loadavg();
  const server = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_KIT_SERVER: "1" },
  });
  const port = await new Promise<number>((resolve) => server.once("message", (m) => resolve(m as number)));
  const url = `http://127.0.0.1:${port}`;
  const clients = createClientFactory({ logger: createLogger({ service: "bench", level: "warn" }) });
  const kit = clients.client(GitHubService, url, "github");
  const raw = createClient(GitHubService, createGrpcTransport({ baseUrl: url }));

  const round = async (client: typeof raw) => {
    const ms: number[] = [];
    const cpuBefore = process.cpuUsage();
    for (let i = 0; i < CALLS; i++) {
      const begin = performance.now();
      await client.getIssue({});
      ms.push(performance.now() - begin);
    }
    const cpu = process.cpuUsage(cpuBefore);
    ms.sort((a, b) => a - b);
    return { p50Ms: ms[Math.floor(CALLS / 2)]!, cpuUsPerCall: (cpu.user + cpu.system) / CALLS };
  };
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const r3 = (n: number) => Math.round(n * 1000) / 1000;

  await round(kit);
  await round(raw);
  const rounds = [];
  for (let i = 0; i < ROUNDS; i++) {
    // Each client goes first in every other round.
    const [first, second] = i % 2 === 0 ? [kit, raw] : [raw, kit];
    const a = await round(first);
    const b = await round(second);
    const [kitRound, w] = first === kit ? [a, b] : [b, a];
    rounds.push({
      kitP50Ms: r3(kitRound.p50Ms),
      rawP50Ms: r3(w.p50Ms),
      ratioP50: r3(kitRound.p50Ms / w.p50Ms),
      kitCpuUsPerCall: Math.round(kitRound.cpuUsPerCall),
      rawCpuUsPerCall: Math.round(w.cpuUsPerCall),
    });
  }
  clients.close();
  server.disconnect();
  recordRun("kit-client", process.env.BENCH_LABEL ?? "latest", {
    date: new Date().toISOString(),
    machine: machineFacts(loadBefore),
    setup: {
      callsPerRound: CALLS,
      rounds: ROUNDS,
      call: "GitHubService.GetIssue, unary, one at a time, cleartext gRPC on loopback",
    },
    rounds,
    medianRatioP50: median(rounds.map((r) => r.ratioP50)),
    medianCpuRatio: r3(median(rounds.map((r) => r.kitCpuUsPerCall / r.rawCpuUsPerCall))),
    goalKitClientLe11xRaw: median(rounds.map((r) => r.ratioP50)) <= 1.1,
  });
  process.exit(0);
}
