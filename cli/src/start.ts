import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { connectRedis, envInsecure, envRedis, type Logger } from "@hookmesh/kit";
import { devIdentities } from "./identity-commands.js";
import { formatReplicas, type Replica } from "./replicas.js";
import { serviceEnv } from "./services.js";

/**
 * Runs services as child processes, one per replica (`planReplicas`: one of each unless
 * `--replicas` says more) as in production, with their output prefixed by the replica's name.
 * Redis is checked first so that a missing Redis is one clear message instead of every
 * service failing at once. When one process exits, the rest are stopped; SIGINT / SIGTERM
 * stop them all gracefully; when this supervisor is killed, each stops by itself as its IPC
 * channel closes.
 */
export async function startServices(replicas: readonly Replica[], logger: Logger): Promise<number> {
  // The shared Redis as the services see it: one server, a cluster or Sentinel's master.
  const redis = await connectRedis({ ...envRedis(process.env, "HOOKMESH", "hookmesh:"), logger });
  redis.disconnect();
  // mTLS by default: the first start makes a development CA and every identity, later starts
  // renew what is close to expiry. A service given its own files (cert-manager's) ignores these.
  if (!envInsecure(process.env)) {
    const made = await devIdentities(process.env);
    const changed = made.identities.filter((identity) => identity.status !== "current");
    if (made.caStatus !== "current" || changed.length > 0) {
      logger.info(
        { ca: made.caFile, created: changed.map((identity) => `${identity.name} (${identity.status})`) },
        "development identities ready",
      );
    }
  }

  for (const line of formatReplicas(replicas)) process.stdout.write(`${line}\n`);
  const width = Math.max(...replicas.map((r) => r.name.length));
  const children = replicas.map((replica) => {
    const { service } = replica;
    const args = service.entry.endsWith(".ts")
      ? ["--import", import.meta.resolve("tsx"), service.entry]
      : [service.entry];
    const child = spawn(process.execPath, args, {
      // The IPC channel is how a service learns that this supervisor died, even by SIGKILL:
      // it closes, and the service stops (runMain) instead of holding its ports.
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      // Integration services without credentials record what they would send instead of
      // failing, so a newcomer sees the whole loop with no accounts; set HOOKMESH_DRY_RUN=0 to refuse.
      // Each service gets only its own secrets (the agent worker none of the providers').
      // Replicas get their own ports and every replicated peer's list of URLs over that.
      env: { HOOKMESH_DRY_RUN: "1", ...serviceEnv(service, process.env), ...replica.env },
      // Its own process group, so a terminal's Ctrl-C reaches only this supervisor, which
      // then stops each service once, gracefully.
      detached: true,
    });
    const prefix = `${replica.name.padEnd(width)} | `;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => process.stdout.write(`${prefix + line}\n`));
    }
    return { replica, child };
  });

  return new Promise((resolve) => {
    let stopping = false;
    let exitCode = 0;
    const running = new Set<ChildProcess>(children.map((c) => c.child));
    const stopAll = (signal: NodeJS.Signals) => {
      stopping = true;
      for (const child of running) child.kill(signal);
    };
    process.on("SIGINT", () => stopAll("SIGTERM"));
    process.on("SIGTERM", () => stopAll("SIGTERM"));
    process.on("exit", () => {
      for (const child of running) child.kill("SIGKILL");
    });
    for (const { replica, child } of children) {
      child.on("exit", (code, signal) => {
        running.delete(child);
        if (!stopping) {
          logger.error({ replica: replica.name, code, signal }, `${replica.name} exited; stopping the others`);
          exitCode = 1;
          stopAll("SIGTERM");
        }
        if (running.size === 0) resolve(exitCode);
      });
    }
  });
}
