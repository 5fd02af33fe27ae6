import { readdirSync, readFileSync } from "node:fs";
import * as net from "node:net";

/** What the supervisor tests look at in the processes `hookmesh start` runs. */

export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The services whose parent is `pid`, from /proc (field 4 of stat, after the command in
 * parentheses); tsx's esbuild, also a child of the CLI, runs no service entry.
 */
export function servicesOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return parent === pid && /\/src\/main\.[jt]s\0/.test(readFileSync(`/proc/${name}/cmdline`, "utf8"));
      } catch {
        return false;
      }
    })
    .map(Number);
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${timeoutMs} ms`);
}
