import { execFile, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

/**
 * docker-compose.yml, checked without a container engine: against the Compose Specification's
 * JSON schema (deploy/schemas/compose-spec.json, vendored from compose-spec/compose-spec), by
 * `docker compose config` / Debian's `docker-compose config` where either is installed, and
 * for what the demo relies on.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));
const file = join(root, "docker-compose.yml");
const run = promisify(execFile);

interface Service {
  image?: string;
  build?: { context: string; target: string };
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  deploy?: { replicas?: number };
  ports?: string[];
  restart?: string;
  stop_grace_period?: string;
  secrets?: string[];
  networks?: string[];
  volumes?: string[];
}
interface Compose {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
  networks: Record<string, { internal?: boolean } | null>;
}

// Compose reads YAML 1.1 merge keys (`<<: *anchor`), which this file uses for what every service shares.
const compose = parse(readFileSync(file, "utf8"), { merge: true }) as Compose;
const services = compose.services;
const MESH = ["tasks", "github", "slack", "jira", "sentry", "agent", "gateway", "dashboard"];
/** gRPC ports (ARCHITECTURE.md); each admin port is + 1000. */
const GRPC_PORTS: Record<string, number> = {
  gateway: 50050,
  tasks: 50051,
  agent: 50052,
  github: 50061,
  slack: 50062,
  jira: 50063,
  sentry: 50064,
  dashboard: 50070,
};

const seconds = (duration: string) => {
  const match = /^(\d+)(ms|s|m)$/.exec(duration);
  if (!match) throw new Error(`unexpected duration ${duration}`);
  return Number(match[1]) / ({ ms: 1000, s: 1, m: 1 / 60 } as const)[match[2] as "ms" | "s" | "m"];
};

function installed(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("docker-compose.yml", () => {
  it("is valid against the Compose Specification's schema, which rejects a broken file", () => {
    // The schema names draft-07 by its https address, which Ajv does not know as an alias: it is
    // compiled as draft-07 (Ajv's default) without validating it against the meta-schema.
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    const validate = ajv.compile(JSON.parse(readFileSync(join(root, "deploy/schemas/compose-spec.json"), "utf8")));
    expect(validate(compose), ajv.errorsText(validate.errors)).toBe(true);
    const broken = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    broken.services.tasks!.restart_policy = "always";
    broken.services.gateway!.depends_on = { tasks: { condition: "when_ready" } };
    expect(validate(broken)).toBe(false);
    expect(ajv.errorsText(validate.errors)).toMatch(/restart_policy|condition/);
  });

  it.runIf(installed("docker-compose", ["version"]))("passes Debian's docker-compose config", async () => {
    await expect(run("docker-compose", ["-f", file, "config", "-q"], { cwd: root })).resolves.toBeDefined();
  });

  it.runIf(installed("docker", ["compose", "version"]))("passes docker compose config", async () => {
    await expect(run("docker", ["compose", "-f", file, "config", "-q"], { cwd: root })).resolves.toBeDefined();
  });

  it("runs every service of the mesh from the compiled image, each entry point existing", () => {
    expect(Object.keys(services).sort()).toEqual([...MESH, "certs", "postgres", "redis"].sort());
    for (const name of [...MESH, "certs"]) {
      const service = services[name]!;
      expect(service.image, name).toMatch(/^hookmesh(-agent)?:local$/);
      expect(service.build?.target, name).toBe(name === "agent" ? "agent" : "runtime");
      const entry = service.command![0]!;
      expect(entry, name).toMatch(/^dist\/.*\/src\/main\.js$/);
      // dashboard's source arrives with its service (services/dashboard).
      if (name !== "dashboard")
        expect(existsSync(join(root, entry.slice(5).replace(/\.js$/, ".ts"))), entry).toBe(true);
    }
  });

  it("checks each service's health on its admin port, and starts a service only after what it needs is healthy", () => {
    for (const name of MESH) {
      const service = services[name]!;
      expect(service.healthcheck?.test, name).toEqual([
        "CMD",
        "node",
        "/app/deploy/docker/healthcheck.mjs",
        String(GRPC_PORTS[name]! + 1000),
      ]);
      expect(service.depends_on?.certs, name).toEqual({ condition: "service_completed_successfully" });
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(condition, `${name} → ${dependency}`).toBe(
          dependency === "certs" ? "service_completed_successfully" : "service_healthy",
        );
        if (dependency !== "certs") expect(services[dependency]!.healthcheck?.test, dependency).toBeDefined();
      }
    }
    expect(Object.keys(services.gateway!.depends_on!)).toEqual(expect.arrayContaining(["redis", "tasks"]));
    expect(Object.keys(services.dashboard!.depends_on!)).toEqual(expect.arrayContaining(["postgres", "tasks"]));
    expect(Object.keys(services.agent!.depends_on!)).toContain("tasks");
  });

  it("restarts services, and gives each longer to stop than its drain", () => {
    for (const name of [...MESH, "redis", "postgres"]) {
      const service = services[name]!;
      expect(service.restart, name).toBe("unless-stopped");
      const drain = Number(service.environment?.SHUTDOWN_GRACE_MS ?? 10_000) / 1000;
      expect(seconds(service.stop_grace_period!), name).toBeGreaterThan(drain);
    }
    expect(services.certs!.restart).toBe("no");
  });

  it("publishes only the gateway's webhook port and the dashboard's web port, on loopback unless told", () => {
    const published = Object.entries(services).filter(([, s]) => s.ports !== undefined);
    expect(Object.fromEntries(published.map(([name, s]) => [name, s.ports]))).toEqual({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose's interpolation, not JavaScript's
      gateway: ["${GATEWAY_PUBLISH:-127.0.0.1:8080}:8080"],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose's interpolation, not JavaScript's
      dashboard: ["${DASHBOARD_PUBLISH:-127.0.0.1:8070}:8070"],
    });
  });

  it("makes mTLS identities in a one-shot service that every other reads, read-only", () => {
    expect(services.certs!.command).toEqual(["dist/cli/src/main.js", "certs"]);
    expect(services.certs!.volumes).toEqual(["identities:/hookmesh"]);
    for (const name of MESH) {
      expect(services[name]!.volumes, name).toEqual(["identities:/hookmesh:ro"]);
      const env = services[name]!.environment!;
      expect(env.HOOKMESH_HOME, name).toBe("/hookmesh");
      expect(env.HOOKMESH_INSECURE, name).toBeUndefined();
      for (const [variable, value] of Object.entries(env).filter(([v]) => v.endsWith("_URL") && v !== "REDIS_URL")) {
        if (/^[a-z]+:\/\/[a-z]+:5\d{4}$/.test(value)) expect(value, `${name} ${variable}`).toMatch(/^https:\/\//);
      }
    }
  });

  it("runs a dry demo: integration services send nothing, the agent runs a harmless command", () => {
    for (const name of ["github", "slack", "jira", "sentry"]) {
      expect(services[name]!.environment!.HOOKMESH_DRY_RUN, name).toBe("1");
    }
    const agent = services.agent!.environment!;
    expect(agent.AGENT_RUNNER).toBe("command");
    expect(agent.AGENT_COMMAND).toMatch(/^\$\{AGENT_COMMAND:-echo "[^"$`;|&]+"\}$/);
  });

  it("takes the gateway's webhook secrets from files copied from secrets/*.example", () => {
    const gateway = services.gateway!;
    for (const [name, { file: path }] of Object.entries(compose.secrets)) {
      expect(gateway.secrets).toContain(name);
      expect(existsSync(join(root, `${path}.example`)), `${path}.example`).toBe(true);
      expect(Object.values(gateway.environment!)).toContain(`/run/secrets/${name}`);
    }
    expect(Object.keys(compose.secrets).sort()).toEqual(
      ["github_webhook_secret", "slack_signing_secret", "jira_webhook_secret", "sentry_client_secret"].sort(),
    );
    // The real files never reach git or the image.
    expect(readFileSync(join(root, ".gitignore"), "utf8")).toMatch(/^\/secrets\/\*\n!\/secrets\/\*\.example$/m);
  });

  it("keeps the agent worker off the data network, and Redis and PostgreSQL on it only", () => {
    expect(compose.networks.data).toEqual({ internal: true });
    expect(services.agent!.networks).toEqual(["mesh"]);
    expect(services.redis!.networks).toEqual(["data"]);
    expect(services.postgres!.networks).toEqual(["data"]);
    expect(services.redis!.command).toEqual(expect.arrayContaining(["--appendonly", "yes"]));
    expect(services.redis!.volumes).toEqual(["redis-data:/data"]);
  });

  it("runs replicas of the agent worker and the tasks service", () => {
    expect(services.tasks!.deploy?.replicas).toBeGreaterThanOrEqual(2);
    expect(services.agent!.deploy?.replicas).toBeGreaterThanOrEqual(2);
  });
});
