import { describe, expect, it } from "vitest";
import { ConfigError, type Env, envIdentity } from "../src/config.js";
import { envListen, envPeer } from "../src/listen.js";
import { testIdentities } from "../src/testing/identities.js";

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

const insecure: Env = { HOOKMESH_INSECURE: "1" };

describe("envPeer", () => {
  it("reads a list of URLs and dns:/// targets, in one spelling", () => {
    expect(envPeer({ TASKS_URL: " https://10.0.0.5:50051/, dns:///tasks.hookmesh.svc:50051 " }, "TASKS_URL", 1)).toBe(
      "https://10.0.0.5:50051,dns:///tasks.hookmesh.svc:50051",
    );
    expect(envPeer(insecure, "TASKS_URL", 50051)).toBe("http://127.0.0.1:50051");
    expect(envPeer({}, "TASKS_URL", 50051)).toBe("https://127.0.0.1:50051");
  });

  it.each([
    "https://a:1,,https://b:2",
    "https://a:1,tasks:50051",
    "dns:///tasks",
    "dns://10.0.0.2/tasks:50051",
    "https://tasks:50051/prefix",
  ])("names the variable of a malformed list: %j", (value) => {
    const err = configError(() => envPeer({ TASKS_URL: value }, "TASKS_URL", 50051));
    expect(err.variable).toBe("TASKS_URL");
    expect(err.message).toMatch(/^TASKS_URL: /);
  });
});

describe("envIdentity's peer checks, target by target", () => {
  it("takes loopback targets in cleartext, dns:/// ones included", () => {
    const peers = {
      TASKS_URL: "http://127.0.0.1:50051,http://127.0.0.1:50151",
      GITHUB_URL: "dns:///localhost:50061,http://[::1]:50161",
    };
    expect(envIdentity(insecure, "agent", { peers })).toEqual({ insecure: true });
  });

  it.each([
    ["http://127.0.0.1:50051,http://tasks:50051", /expected 127.0.0.1, ::1 or localhost, got "tasks"/],
    ["http://127.0.0.1:50051,https://127.0.0.1:50151", /expected an http:\/\/ URL/],
    ["dns:///tasks.hookmesh.svc:50051", /expected 127.0.0.1, ::1 or localhost, got "tasks.hookmesh.svc"/],
    ["http://127.0.0.1:1,,", /comma-separated list/],
  ])("refuses in cleartext %j, naming the variable", (value, message) => {
    const err = configError(() => envIdentity(insecure, "gateway", { peers: { TASKS_URL: value } }));
    expect(err.variable).toBe("TASKS_URL");
    expect(err.message).toMatch(message);
  });

  it("wants every URL of a list https under mTLS, and takes dns:/// targets anywhere", async () => {
    const { env } = await testIdentities();
    const ok = { TASKS_URL: "https://tasks-0:50051,dns:///tasks.hookmesh.svc.cluster.local:50051" };
    expect(envIdentity(env, "gateway", { peers: ok }).insecure).toBe(false);
    const err = configError(() =>
      envIdentity(env, "gateway", { peers: { TASKS_URL: "https://tasks-0:50051,http://tasks-1:50051" } }),
    );
    expect(err.variable).toBe("TASKS_URL");
    expect(err.message).toMatch(/calls go over mTLS: expected an https:\/\/ URL, got "http:\/\/tasks-1:50051"/);
  });

  it("checks peers given to envListen, as services pass them", () => {
    const env = { ...insecure, TASKS_URL: "http://127.0.0.1:50051,http://10.0.0.5:50051" };
    const err = configError(() => envListen(env, "gateway", 50050, { TASKS_URL: envPeer(env, "TASKS_URL", 50051) }));
    expect(err.variable).toBe("TASKS_URL");
  });
});
