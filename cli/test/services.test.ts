import { describe, expect, it } from "vitest";
import { SERVICES, service, serviceEnv } from "../src/services.js";

describe("serviceEnv", () => {
  const env = {
    PATH: "/usr/bin",
    HOOKMESH_HOME: "/srv/hookmesh",
    ANTHROPIC_API_KEY: "sk-agent",
    GITHUB_TOKEN: "ghp-x",
    GITHUB_APP_PRIVATE_KEY_FILE: "/run/secrets/github-app.pem",
    GITHUB_WEBHOOK_SECRET: "whsec",
    SLACK_BOT_TOKEN: "xoxb",
    SLACK_SIGNING_SECRET: "slack-signing",
    JIRA_API_TOKEN: "jira",
    JIRA_BEARER_TOKEN_FILE: "/run/secrets/jira",
    JIRA_WEBHOOK_SECRET: "jira-hook",
    SENTRY_AUTH_TOKEN: "sntrys",
    SENTRY_CLIENT_SECRET: "sentry-hook",
    GATEWAY_REDIS_PASSWORD: "gw-redis",
    TASKS_TLS_KEY_FILE: "/run/secrets/tasks.key",
    AGENT_REDIS_PASSWORD: "unused",
    DASHBOARD_DATABASE_URL: "postgres://dashboard:pw@db/dashboard",
  };

  it("gives the agent worker no provider credentials, webhook secrets or other services' keys", () => {
    expect(serviceEnv(service("agent"), env)).toEqual({
      PATH: "/usr/bin",
      HOOKMESH_HOME: "/srv/hookmesh",
      ANTHROPIC_API_KEY: "sk-agent",
      AGENT_REDIS_PASSWORD: "unused",
    });
  });

  it("gives each service its own secrets and none of the others'", () => {
    const names = (name: string) => Object.keys(serviceEnv(service(name), env)).sort();
    const common = ["ANTHROPIC_API_KEY", "HOOKMESH_HOME", "PATH"];
    expect(names("github")).toEqual([...common, "GITHUB_APP_PRIVATE_KEY_FILE", "GITHUB_TOKEN"].sort());
    expect(names("slack")).toEqual([...common, "SLACK_BOT_TOKEN"].sort());
    expect(names("jira")).toEqual([...common, "JIRA_API_TOKEN", "JIRA_BEARER_TOKEN_FILE"].sort());
    expect(names("sentry")).toEqual([...common, "SENTRY_AUTH_TOKEN"].sort());
    expect(names("tasks")).toEqual([...common, "TASKS_TLS_KEY_FILE"].sort());
    expect(names("gateway")).toEqual(
      [
        ...common,
        "GATEWAY_REDIS_PASSWORD",
        "GITHUB_WEBHOOK_SECRET",
        "JIRA_WEBHOOK_SECRET",
        "SENTRY_CLIENT_SECRET",
        "SLACK_SIGNING_SECRET",
      ].sort(),
    );
    expect(names("dashboard")).toEqual([...common, "DASHBOARD_DATABASE_URL"].sort());
    expect(SERVICES.map((s) => s.name)).toContain("agent");
  });
});
