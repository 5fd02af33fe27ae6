import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { UsageError } from "../src/command.js";
import { formatReplicas, parseReplicas, planReplicas } from "../src/replicas.js";
import { SERVICES, selectServices } from "../src/services.js";

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error("not refused");
}

describe("--replicas", () => {
  it("reads name=N for any service, and nothing when absent", () => {
    expect(parseReplicas("tasks=2,agent=3,gateway=2")).toEqual(
      new Map([
        ["tasks", 2],
        ["agent", 3],
        ["gateway", 2],
      ]),
    );
    expect(parseReplicas(" github=1 , slack=10 ")).toEqual(
      new Map([
        ["github", 1],
        ["slack", 10],
      ]),
    );
    expect(parseReplicas(undefined)).toEqual(new Map());
  });

  it("refuses every mistake with what is wrong and what is expected", () => {
    const known = SERVICES.map((s) => s.name).join(", ");
    expect(refusal(() => parseReplicas(""))).toBe("--replicas: expected name=N[,name=N…], e.g. tasks=2,agent=3");
    expect(refusal(() => parseReplicas("tasks"))).toBe('--replicas: "tasks" is not name=N, e.g. tasks=2');
    expect(refusal(() => parseReplicas("=2"))).toBe('--replicas: "=2" is not name=N, e.g. tasks=2');
    expect(refusal(() => parseReplicas("tasks=2,"))).toBe('--replicas: "" is not name=N, e.g. tasks=2');
    expect(refusal(() => parseReplicas("taks=2"))).toBe(`--replicas: unknown service "taks"; known: ${known}`);
    expect(refusal(() => parseReplicas("tasks=2,tasks=3"))).toBe("--replicas: tasks is given twice");
    for (const count of ["0", "-1", "two", "1.5", "", "11", "2x"]) {
      expect(refusal(() => parseReplicas(`tasks=${count}`))).toBe(
        `--replicas: tasks=${count}: N must be a whole number from 1 to 10`,
      );
    }
  });
});

describe("the replicas' plan", () => {
  const env = { PATH: "/usr/bin" };

  it("is one process of each service, as configured, under npm start", () => {
    const plan = planReplicas(SERVICES, new Map(), env);
    expect(plan.map((r) => r.name)).toEqual(SERVICES.map((s) => s.name));
    for (const replica of plan) expect(replica.env).toEqual({});
    expect(plan.find((r) => r.name === "gateway")).toMatchObject({
      url: "https://127.0.0.1:50050",
      adminUrl: "http://127.0.0.1:51050",
      httpUrl: "http://127.0.0.1:8080",
    });
  });

  it("puts replica i on the gRPC and admin ports + 100·i and the edge port + i, and lists the replicas to every peer", () => {
    const plan = planReplicas(SERVICES, parseReplicas("tasks=2,agent=3,gateway=2"), env);
    const byName = new Map(plan.map((r) => [r.name, r]));
    expect(plan.map((r) => r.name)).toEqual([
      "tasks-0",
      "tasks-1",
      "github",
      "slack",
      "jira",
      "sentry",
      "agent-0",
      "agent-1",
      "agent-2",
      "gateway-0",
      "gateway-1",
      "dashboard",
    ]);
    const lists = {
      TASKS_URL: "https://127.0.0.1:50051,https://127.0.0.1:50151",
      AGENT_URL: "https://127.0.0.1:50052,https://127.0.0.1:50152,https://127.0.0.1:50252",
      GATEWAY_URL: "https://127.0.0.1:50050,https://127.0.0.1:50150",
    };
    expect(byName.get("tasks-1")).toMatchObject({
      url: "https://127.0.0.1:50151",
      adminUrl: "http://127.0.0.1:51151",
      env: { ...lists, TASKS_PORT: "50151", TASKS_ADMIN_PORT: "51151" },
    });
    expect(byName.get("gateway-1")).toMatchObject({
      url: "https://127.0.0.1:50150",
      httpUrl: "http://127.0.0.1:8081",
      env: { ...lists, GATEWAY_PORT: "50150", GATEWAY_ADMIN_PORT: "51150", GATEWAY_HTTP_PORT: "8081" },
    });
    // Each worker its own directories (repository mirrors are guarded within one process).
    expect(byName.get("agent-2")!.env).toEqual({
      ...lists,
      AGENT_PORT: "50252",
      AGENT_ADMIN_PORT: "51252",
      AGENT_WORKDIR: join(tmpdir(), "hookmesh-runs", "agent-2"),
    });
    // Services run once keep their ports and are told where the replicated ones are.
    expect(byName.get("github")!.env).toEqual(lists);
    expect(byName.get("dashboard")!.env).toEqual(lists);
    expect(formatReplicas(plan)).toContain(
      "gateway-1  grpc https://127.0.0.1:50150  admin http://127.0.0.1:51150  edge http://127.0.0.1:8081",
    );
  });

  it("starts from the ports, hosts and worker settings in the environment, in cleartext when insecure", () => {
    const plan = planReplicas(selectServices(["agent", "dashboard"]), parseReplicas("agent=2,dashboard=2"), {
      HOOKMESH_INSECURE: "1",
      AGENT_PORT: "20000",
      AGENT_ADMIN_PORT: "0",
      AGENT_ID: "box",
      AGENT_WORKDIR: "/srv/runs",
      AGENT_REPO_CACHE: "/srv/mirrors",
      DASHBOARD_HOST: "::1",
      DASHBOARD_PORT: "21000",
      DASHBOARD_ADMIN_PORT: "22000",
      DASHBOARD_HTTP_PORT: "23000",
      DASHBOARD_DATABASE_URL: "postgres://dashboard@db/dashboard",
    });
    expect(plan[1]).toMatchObject({
      name: "agent-1",
      url: "http://127.0.0.1:20100",
      adminUrl: "http://127.0.0.1:0",
      env: {
        AGENT_URL: "http://127.0.0.1:20000,http://127.0.0.1:20100",
        AGENT_PORT: "20100",
        AGENT_ADMIN_PORT: "0",
        AGENT_ID: "box-1",
        AGENT_WORKDIR: "/srv/runs/agent-1",
        AGENT_REPO_CACHE: "/srv/mirrors/agent-1",
      },
    });
    expect(plan[3]).toMatchObject({
      name: "dashboard-1",
      url: "http://[::1]:21100",
      adminUrl: "http://[::1]:22100",
      httpUrl: "http://[::1]:23001",
      env: { DASHBOARD_PORT: "21100", DASHBOARD_ADMIN_PORT: "22100", DASHBOARD_HTTP_PORT: "23001" },
    });
    expect(plan[3]!.env.DASHBOARD_URL).toBe("http://[::1]:21000,http://[::1]:21100");
  });

  it("refuses layouts that cannot work, saying what to change", () => {
    expect(refusal(() => planReplicas(selectServices(["tasks"]), parseReplicas("gateway=2"), env))).toBe(
      "--replicas: gateway=2 names a service that is not started (tasks)",
    );
    expect(refusal(() => planReplicas(SERVICES, parseReplicas("dashboard=2"), env))).toMatch(
      /^--replicas: dashboard=2 needs DASHBOARD_DATABASE_URL: .* PGlite files that one process alone can open/,
    );
    expect(refusal(() => planReplicas(SERVICES, parseReplicas("tasks=2"), { TASKS_PORT: "0" }))).toBe(
      "--replicas: tasks=2 needs a fixed TASKS_PORT, not 0: its peers are told where each replica listens",
    );
    // tasks-1 on 50151 is where github's replica 0 would be moved onto.
    expect(refusal(() => planReplicas(SERVICES, parseReplicas("tasks=2"), { GITHUB_PORT: "50151" }))).toBe(
      "--replicas: github's gRPC port 50151 is also tasks-1's gRPC port; move one",
    );
    expect(refusal(() => planReplicas(SERVICES, parseReplicas("tasks=2"), { TASKS_PORT: "64500" }))).toBe(
      "--replicas: tasks-1's admin port would be 65600, past 65535; lower its base port",
    );
  });
});
