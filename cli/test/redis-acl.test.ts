import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_REDIS_URL } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { redisAclCommand } from "../src/redis-acl.js";
import { SERVICES } from "../src/services.js";

const home = mkdtempSync(join(tmpdir(), "hookmesh-acl-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

function acl(args: string[], env: Record<string, string> = {}): { out: string[]; notes: string[] } {
  const out: string[] = [];
  const notes: string[] = [];
  redisAclCommand(
    args,
    SERVICES,
    { HOOKMESH_HOME: home, ...env },
    (l) => out.push(l),
    (l) => notes.push(l),
  );
  return { out: out.join("\n").split("\n"), notes };
}

describe("hookmesh redis-acl", () => {
  it("makes one user per service that keeps state, with a password file each, and prints only hashes", () => {
    const { out, notes } = acl([]);
    expect(out.map((l) => l.split(" ")[2])).toEqual([
      "hookmesh-tasks",
      "hookmesh-github",
      "hookmesh-slack",
      "hookmesh-jira",
      "hookmesh-sentry",
      "hookmesh-gateway",
    ]);
    for (const line of out) expect(line).toMatch(/^ACL SETUSER hookmesh-\w+ reset on #[0-9a-f]{64} ~hookmesh:\w+:\* /);
    expect(statSync(join(home, "redis", "tasks.password")).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, "redis")).mode & 0o777).toBe(0o700);
    expect(notes.join("\n")).toContain(`TASKS_REDIS_PASSWORD_FILE=${join(home, "redis", "tasks.password")}`);
    // A second run keeps the passwords: the same hashes.
    expect(acl([]).out).toEqual(out);
  });

  it("takes a service's own prefix and password from its variables", () => {
    const { out } = acl(["--format", "aclfile"], { GATEWAY_REDIS_PREFIX: "edge:", GATEWAY_REDIS_PASSWORD: "given" });
    expect(out.find((l) => l.startsWith("user hookmesh-gateway "))).toMatch(/ ~edge:\* &edge:\* /);
    expect(out.join("\n")).not.toContain("given");
  });

  it("confines each user to its hash-tagged prefix on a cluster, and says to apply the rules on every node", () => {
    const { out, notes } = acl([], { REDIS_CLUSTER_NODES: "10.0.0.1:7000" });
    expect(out.find((l) => l.startsWith("ACL SETUSER hookmesh-tasks "))).toMatch(
      / ~\{hookmesh:tasks\}:\* &\{hookmesh:tasks\}:\* .* \+cluster\|slots \+cluster\|info$/,
    );
    expect(notes.join("\n")).toContain("REDIS_CLUSTER_NODES: ACL users are per node; apply these rules on every node");
  });

  it("refuses an unknown format", () => {
    expect(() => acl(["--format", "json"])).toThrow(/usage: hookmesh redis-acl/);
  });

  it("prints commands Redis accepts", async () => {
    const prefix = `hookmesh-test:acl-cli:${Date.now()}:`;
    const { out } = acl([], { TASKS_REDIS_PREFIX: prefix });
    const tasksRule = out.find((l) => l.startsWith("ACL SETUSER hookmesh-tasks "))!;
    const name = `hookmesh-test-acl-cli-${Date.now()}`;
    const admin = new Redis(TEST_REDIS_URL);
    try {
      const [, , , ...rules] = tasksRule.split(" ");
      expect(await admin.call("ACL", "SETUSER", name, ...rules)).toBe("OK");
      const described = (await admin.call("ACL", "GETUSER", name)) as unknown[];
      expect(JSON.stringify(described)).toContain(`~${prefix}*`);
    } finally {
      await admin.call("ACL", "DELUSER", name);
      admin.disconnect();
    }
  });
});
