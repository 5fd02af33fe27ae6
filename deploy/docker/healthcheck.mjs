// The image's HEALTHCHECK: GET /livez on the admin port of the service this container runs,
// with Node's fetch, since the slim image has no curl. The port is the first argument, else
// <NAME>_ADMIN_PORT, else the service's default (its gRPC port + 1000); the service is read
// from the entry point that PID 1 (tini) runs, e.g. dist/services/tasks/src/main.js.
import { readFileSync } from "node:fs";

const DEFAULT_ADMIN_PORTS = {
  gateway: 51050,
  tasks: 51051,
  agent: 51052,
  github: 51061,
  slack: 51062,
  jira: 51063,
  sentry: 51064,
  dashboard: 51070,
};

function serviceOf(cmdline) {
  return /dist\/(?:services\/)?([a-z]+)\/src\/main\.js/.exec(cmdline)?.[1];
}

function adminAddress(argv, env) {
  const name = serviceOf(readFileSync("/proc/1/cmdline", "utf8").replaceAll("\0", " "));
  const prefix = name?.toUpperCase();
  const port = argv[0] ?? env[`${prefix}_ADMIN_PORT`] ?? DEFAULT_ADMIN_PORTS[name];
  if (port === undefined) return undefined;
  // A service bound to every address answers on loopback; one bound to a single address there.
  const host = env[`${prefix}_ADMIN_HOST`] ?? env[`${prefix}_HOST`] ?? "127.0.0.1";
  const loopback = host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host;
  return `${loopback.includes(":") ? `[${loopback}]` : loopback}:${port}`;
}

const address = adminAddress(process.argv.slice(2), process.env);
if (address === undefined) {
  console.error("healthcheck: no hookmesh service runs here; pass its admin port");
  process.exit(1);
}
try {
  const response = await fetch(`http://${address}/livez`, { signal: AbortSignal.timeout(4_000) });
  if (!response.ok) console.error(`healthcheck: ${address}/livez answered ${response.status}`);
  process.exit(response.ok ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: ${address}/livez: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
