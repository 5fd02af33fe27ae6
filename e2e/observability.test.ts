/**
 * The Grafana dashboard and the Prometheus alert rules in deploy/observability are checked
 * against what the services serve: every PromQL expression parses (Prometheus's own grammar,
 * @prometheus-io/lezer-promql) and every metric it names is one that a running gateway, tasks
 * service, agent worker or integration service has on its admin port's /metrics. The rules and
 * the scrape configuration also pass `promtool check` where promtool is installed (Debian:
 * `apt-get install prometheus`).
 */
import type { ChildProcess } from "node:child_process";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startGateway } from "@hookmesh/gateway/testing";
import { createLogger, startAdminServer } from "@hookmesh/kit";
import { freePort, parsePrometheusText, startService, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { startTasks } from "@hookmesh/tasks/testing";
import { parser } from "@prometheus-io/lezer-promql";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse as parseYaml } from "yaml";

const logger = createLogger({ service: "observability-e2e", level: "silent" });
const dashboardFile = fileURLToPath(new URL("../deploy/observability/grafana-dashboard.json", import.meta.url));
const rulesFile = fileURLToPath(new URL("../deploy/observability/prometheus-rules.yml", import.meta.url));
const configFile = fileURLToPath(new URL("../deploy/observability/prometheus.yml", import.meta.url));
const run = promisify(execFile);
/** Whether promtool is on the PATH; the checks that need it are skipped without it. */
const promtool = run("promtool", ["--version"]).then(
  () => true,
  () => false,
);

/** The sample names each family type serves beside the family's own name. */
const SAMPLE_SUFFIXES: Record<string, string[]> = {
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["", "_sum", "_count"],
};

const cleanups: (() => Promise<unknown> | unknown)[] = [];
/** Every sample name some service serves on its /metrics. */
const served = new Set<string>();

async function collect(url: string): Promise<void> {
  const text = await vi.waitFor(
    async () => {
      const res = await fetch(`${url}/metrics`);
      if (res.status !== 200) throw new Error(`${url}/metrics answered ${res.status}`);
      return res.text();
    },
    { timeout: 15_000, interval: 100 },
  );
  for (const family of parsePrometheusText(text).values()) {
    for (const suffix of SAMPLE_SUFFIXES[family.type] ?? [""]) served.add(family.name + suffix);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  await once(child, "exit");
}

beforeAll(async () => {
  const db: TestRedis = await testRedis("observability");
  cleanups.push(() => db.cleanup());
  const tasks = await startTasks(db, logger);
  cleanups.push(() => tasks.close());
  const gateway = await startGateway(db, tasks.url, logger);
  cleanups.push(() => gateway.close());
  const admins = await Promise.all(
    [
      { health: gateway.server.grpc.health, registry: gateway.metrics.registry },
      { health: tasks.server.health, registry: tasks.metrics.registry },
    ].map((service) => startAdminServer({ host: "127.0.0.1", port: 0, logger, ...service })),
  );
  for (const admin of admins) cleanups.push(() => admin.close());
  // The agent worker and an integration service as processes, the way their packages start.
  const [agentAdmin, slackAdmin] = [await freePort(), await freePort()];
  const common = { HOOKMESH_INSECURE: "1", LOG_LEVEL: "error", SHUTDOWN_GRACE_MS: "0" };
  const agent = startService("@hookmesh/agent", {
    ...common,
    TASKS_URL: tasks.url,
    AGENT_PORT: "0",
    AGENT_ADMIN_PORT: String(agentAdmin),
    AGENT_RUNNER: "command",
    AGENT_COMMAND: "true",
    AGENT_SANDBOX: "off",
  });
  cleanups.push(() => stop(agent));
  const slack = startService("@hookmesh/slack", {
    ...common,
    REDIS_URL: "redis://127.0.0.1:6379",
    SLACK_REDIS_PREFIX: `${db.prefix}slack:`,
    SLACK_PORT: "0",
    SLACK_ADMIN_PORT: String(slackAdmin),
  });
  cleanups.push(() => stop(slack));
  await Promise.all([
    ...admins.map((admin) => collect(admin.url)),
    collect(`http://127.0.0.1:${agentAdmin}`),
    collect(`http://127.0.0.1:${slackAdmin}`),
  ]);
}, 60_000);

afterAll(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

/**
 * The metric names `expr` selects, after it parses as PromQL. Grafana's variables are replaced
 * first: a range by a duration, a variable in a label value stays inside its string.
 */
function metricNamesOf(expr: string): string[] {
  const promql = expr.replace(/\$__(rate_interval|interval|range)\b/g, "5m");
  const tree = parser.parse(promql);
  const names: string[] = [];
  const errors: string[] = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(`at ${node.from}: ${promql.slice(node.from, node.from + 20)}`);
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") {
        names.push(promql.slice(node.from, node.to));
      }
    },
  });
  expect(errors, `${expr} does not parse as PromQL`).toEqual([]);
  expect(names.length, `${expr} selects no metric by name`).toBeGreaterThan(0);
  return names;
}

interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string }[];
  panels?: Panel[];
}

describe("the Grafana dashboard", () => {
  const dashboard = JSON.parse(readFileSync(dashboardFile, "utf8")) as {
    uid: string;
    title: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: { name: string; type: string }[] };
  };
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  const queries = panels.filter((panel) => panel.type !== "row");

  it("is a dashboard with a Prometheus data source to choose and panels that use it", () => {
    expect(dashboard).toMatchObject({ uid: "hookmesh-overview", title: "hookmesh" });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource" }),
    );
    expect(queries.length).toBeGreaterThan(20);
    for (const panel of queries) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template
      expect(panel.datasource?.uid, panel.title).toBe("${datasource}");
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
  });

  it("queries only metrics the services serve", () => {
    const missing = queries.flatMap((panel) =>
      (panel.targets ?? []).flatMap((target) =>
        metricNamesOf(target.expr)
          .filter((name) => !served.has(name))
          .map((name) => `${panel.title}: ${name}`),
      ),
    );
    expect(missing).toEqual([]);
  });

  it("shows every hookmesh metric the services serve", () => {
    const shown = new Set(queries.flatMap((panel) => (panel.targets ?? []).flatMap((t) => metricNamesOf(t.expr))));
    const family = (name: string) => name.replace(/_(bucket|sum|count)$/, "");
    const shownFamilies = new Set([...shown].map(family));
    const unshown = [...served].filter((name) => name.startsWith("hookmesh_") && !shownFamilies.has(family(name)));
    expect(unshown).toEqual([]);
  });
});

describe("the Prometheus alert rules", () => {
  const rules = parseYaml(readFileSync(rulesFile, "utf8")) as {
    groups: { name: string; rules: { alert?: string; expr: string; labels?: { severity?: string } }[] }[];
  };
  const alerts = rules.groups.flatMap((group) => group.rules);

  it("alert on the outbox's age, open breakers, dead tasks, lease expirations and spent budgets", () => {
    const names = alerts.map((rule) => rule.alert);
    for (const alert of [
      "HookmeshOutboxStale",
      "HookmeshCircuitBreakerOpen",
      "HookmeshTasksDead",
      "HookmeshLeasesExpiring",
      "HookmeshRouteBudgetSpent",
    ]) {
      expect(names).toContain(alert);
    }
    for (const rule of alerts) expect(["critical", "warning", "info"], rule.alert).toContain(rule.labels?.severity);
  });

  it("query only metrics the services serve", () => {
    const missing = alerts.flatMap((rule) =>
      metricNamesOf(rule.expr)
        .filter((name) => !served.has(name))
        .map((name) => `${rule.alert}: ${name}`),
    );
    expect(missing).toEqual([]);
  });

  it("pass promtool check rules, where promtool is installed", async (context) => {
    if (!(await promtool)) context.skip();
    const { stdout } = await run("promtool", ["check", "rules", rulesFile]);
    expect(stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
  });
});

describe("the Prometheus configuration for a local mesh", () => {
  const config = parseYaml(readFileSync(configFile, "utf8")) as {
    rule_files: string[];
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
  };

  it("scrapes every service's admin port, its gRPC port + 1000, and loads the alert rules", () => {
    const targets = config.scrape_configs.flatMap((job) => job.static_configs.flatMap((c) => c.targets));
    // gateway, tasks, agent, github, slack, jira, sentry, dashboard (ARCHITECTURE.md)
    const grpcPorts = [50050, 50051, 50052, 50061, 50062, 50063, 50064, 50070];
    expect(targets.sort()).toEqual(grpcPorts.map((port) => `127.0.0.1:${port + 1000}`).sort());
    expect(config.rule_files).toEqual(["prometheus-rules.yml"]);
  });

  it("passes promtool check config, where promtool is installed", async (context) => {
    if (!(await promtool)) context.skip();
    const { stdout } = await run("promtool", ["check", "config", configFile]);
    expect(stdout).toContain("is valid prometheus config file syntax");
  });
});
