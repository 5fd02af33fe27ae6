import { join, resolve } from "node:path";
import { ConfigError } from "@hookmesh/kit";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

const INSECURE = { HOOKMESH_INSECURE: "1" };

describe("loadConfig", () => {
  it("defaults to PGlite under HOOKMESH_HOME, loopback ports 50070 and 8070, and the mesh's default addresses", () => {
    const config = loadConfig({ ...INSECURE, HOOKMESH_HOME: "/srv/hookmesh" });
    expect(config).toMatchObject({
      host: "127.0.0.1",
      port: 50070,
      httpHost: "127.0.0.1",
      httpPort: 8070,
      publicUrl: "http://127.0.0.1:8070",
      allowedOrigins: [],
      database: { kind: "pglite", dataDir: join("/srv/hookmesh", "dashboard", "pgdata") },
      tasksUrl: "http://127.0.0.1:50051",
      gatewayUrl: "http://127.0.0.1:50050",
      agents: [{ kind: "url", origin: "http://127.0.0.1:50052" }],
      traceUrlTemplate: "",
      signInTtlMs: 300_000,
      sessionTtlMs: 12 * 3_600_000,
    });
    expect(resolve(config.webDir)).toMatch(/services\/dashboard\/web\/dist$/);
  });

  it("reads a PostgreSQL URL, several agents, the public URL and extra origins", () => {
    const config = loadConfig({
      ...INSECURE,
      DASHBOARD_DATABASE_URL: "postgres://dash@127.0.0.1:5432/dashboard",
      AGENT_URL: "http://127.0.0.1:50052, http://127.0.0.1:50152",
      DASHBOARD_HTTP_PORT: "9000",
      DASHBOARD_ALLOWED_ORIGINS: "http://localhost:5173/",
      DASHBOARD_TRACE_URL_TEMPLATE: "http://127.0.0.1:16686/trace/{trace_id}",
    });
    expect(config.database).toEqual({ kind: "postgres", url: "postgres://dash@127.0.0.1:5432/dashboard" });
    expect(config.agents).toEqual([
      { kind: "url", origin: "http://127.0.0.1:50052" },
      { kind: "url", origin: "http://127.0.0.1:50152" },
    ]);
    expect(config.publicUrl).toBe("http://127.0.0.1:9000");
    expect(config.allowedOrigins).toEqual(["http://localhost:5173"]);
  });

  it.each([
    [{ DASHBOARD_DATABASE_URL: "mysql://db/x" }, "DASHBOARD_DATABASE_URL"],
    [{ DASHBOARD_TRACE_URL_TEMPLATE: "http://jaeger/trace" }, "DASHBOARD_TRACE_URL_TEMPLATE"],
    [{ DASHBOARD_HTTP_PORT: "70000" }, "DASHBOARD_HTTP_PORT"],
    [{ DASHBOARD_SIGN_IN_TTL: "soon" }, "DASHBOARD_SIGN_IN_TTL"],
    [{ AGENT_URL: "http://127.0.0.1:50052,http://10.0.0.7:50052" }, "AGENT_URL"],
    [{ AGENT_URL: "dns:///agent.example:50052" }, "AGENT_URL"],
    [{ DASHBOARD_ALLOWED_ORIGINS: "not a url" }, "DASHBOARD_ALLOWED_ORIGINS[0]"],
  ])("refuses %j, naming %s", (env, variable) => {
    let error: unknown;
    try {
      loadConfig({ ...INSECURE, ...env });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
  });
});
