/** What the benchmarks that run services as processes share: starting them, ports, readiness, CPU and memory from /proc. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { cpus, loadavg, totalmem } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { BENCH_INSECURE } from "./settings.js";

/** A port free on loopback now (chosen as the tests choose theirs). */
export { freePort } from "@hookmesh/kit/testing";

const root = fileURLToPath(new URL("..", import.meta.url));
const trivialAgent = fileURLToPath(new URL("./trivial-agent.sh", import.meta.url));

/**
 * A service's main (`gateway/src/main`, without extension) in a Node process of its own, as the
 * image runs it: compiled by `npm run build` and run by plain Node, or its sources under tsx
 * (`fromSources`), whose loader thread adds some 40 MB to the RSS. Cleartext on loopback, logging
 * warnings only (to the benchmark's stderr).
 */
export function startService(
  main: string,
  env: Record<string, string>,
  options: { fromSources?: boolean; nodeFlags?: readonly string[] } = {},
): ChildProcess {
  const program = options.fromSources ? ["--import", "tsx", `${main}.ts`] : [`dist/${main}.js`];
  return spawn(process.execPath, [...(options.nodeFlags ?? []), ...program], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", ...BENCH_INSECURE, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
}

/** Until `url` answers 2xx (a readiness probe), for at most 30 s. */
export async function untilAnswering(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(url).then(
      (res) => res.ok,
      () => false,
    );
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${url} never answered`);
}

/** Until something accepts connections on `port` on loopback, for at most 30 s. */
export async function untilListening(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`port ${port} never listened`);
}

/** CPU time (user + system) a process has used so far, in ms; /proc counts in ticks of 10 ms. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU time (user + system) of a process's children that have ended and were waited for, in ms. */
export function childrenCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

/** A process's resident memory now, in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
}

/**
 * Writes `run` under `label` in `bench/results/<name>.json`, keeping the runs recorded under
 * other labels, and prints it.
 */
export function recordRun(name: string, label: string, run: unknown): void {
  const dir = fileURLToPath(new URL("./results/", import.meta.url));
  const file = `${dir}${name}.json`;
  let previous: { runs?: Record<string, unknown> } = {};
  try {
    previous = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    // The first run writes the file.
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, `${JSON.stringify({ runs: { ...previous.runs, [label]: run } }, null, 2)}\n`);
  console.log(JSON.stringify(run, null, 2));
}

/** The machine a run measured, with the load averages before it (`loadBefore`) and now. */
export function machineFacts(loadBefore: number[]) {
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverageBefore: loadBefore.map(round),
    loadAverageAfter: loadavg().map(round),
  };
}

/**
 * When each agent of the lifecycle benchmarks started, as the trivial agent (`trivial-agent.sh`)
 * logs it: ms since the epoch by task id, and by `token:<N>` for a start whose prompt carried a
 * bench token.
 */
export function loggedStarts(log: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [id, ns, token] = line.split(" ");
    if (!id || !ns) continue;
    const ms = Number(BigInt(ns) / 1_000n) / 1_000;
    seen.set(id, ms);
    if (token) seen.set(`token:${token}`, ms);
  }
  return seen;
}

/**
 * The floor of the lifecycle benchmarks: the trivial agent spawned directly, `count` times with
 * `slots` at once (each no sooner than `ratePerSecond` allows, if given), its starts logged to
 * `log` (emptied first). Spawns per second, and each start's latency after its spawn in ms.
 */
export async function directSpawns(
  log: string,
  count: number,
  slots: number,
  ratePerSecond?: number,
): Promise<{ perSecond: number; startLatenciesMs: number[] }> {
  writeFileSync(log, "");
  const spawnedAt: number[] = [];
  let next = 0;
  const begin = performance.now();
  const env = { PATH: process.env.PATH, HOOKMESH_BENCH_LOG: log };
  await Promise.all(
    Array.from({ length: slots }, async () => {
      while (next < count) {
        const i = next++;
        if (ratePerSecond) {
          const due = begin + (i * 1000) / ratePerSecond;
          if (due > performance.now()) await sleep(due - performance.now());
        }
        spawnedAt[i] = Date.now();
        const child = spawn(trivialAgent, [], { env: { ...env, HOOKMESH_TASK_ID: `d${i}` }, stdio: "ignore" });
        await once(child, "exit");
      }
    }),
  );
  const perSecond = count / ((performance.now() - begin) / 1000);
  const logged = loggedStarts(log);
  return { perSecond, startLatenciesMs: spawnedAt.map((at, i) => logged.get(`d${i}`)! - at) };
}
