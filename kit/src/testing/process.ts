import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const tsx = import.meta.resolve("tsx");

/**
 * Starts a workspace package's service as a process, the way its package says it starts
 * (`"start": "tsx <entry>"`), in its own folder, with `env` over this process's environment.
 * For end-to-end tests that need a real process (one they can SIGKILL), without reaching into
 * the package's files. Its admin port is a free one (`<NAME>_ADMIN_PORT=0`) unless `env` names
 * one: the default, its gRPC port + 1000, is nobody's to take on a machine running tests.
 */
export function startService(packageName: string, env: NodeJS.ProcessEnv): ChildProcess {
  const manifestPath = require.resolve(`${packageName}/package.json`);
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { scripts?: { start?: string } };
  const entry = /^tsx (\S+)$/.exec(manifest.scripts?.start ?? "")?.[1];
  if (!entry) throw new Error(`${packageName}: its start script is not "tsx <entry>"`);
  const cwd = dirname(manifestPath);
  const adminPort = `${packageName.replace(/^@hookmesh\//, "").toUpperCase()}_ADMIN_PORT`;
  return spawn(process.execPath, ["--import", tsx, join(cwd, entry)], {
    cwd,
    env: { ...process.env, [adminPort]: "0", ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
}
