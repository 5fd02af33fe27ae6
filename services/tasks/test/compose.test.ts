import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, ServingStatus } from "@hookmesh/kit";
import { memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { composeTasks } from "../src/compose.js";
import { tasksTestConfig } from "../src/testing.js";

describe("composeTasks", () => {
  let db: TestRedis;
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hookmesh-tasks-compose-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    db = await testRedis("tasks-compose");
  });
  afterEach(() => db.cleanup());

  function routesFile(text: string): string {
    const file = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, text);
    return file;
  }

  it("seeds the default routing rules, then TASKS_ROUTES_FILE's, and serves once its Redis is connected", async () => {
    const file = routesFile("- id: ops\n  provider: PROVIDER_SLACK\n  trigger: { mention: {} }\n  profile: {}\n");
    const { logger, lines } = memoryLogger("tasks");
    const tasks = await composeTasks(tasksTestConfig(db, { TASKS_ROUTES_FILE: file }), { logger, env: {} });
    try {
      const ids = (await tasks.routingRules.list()).map((rule) => rule.id);
      expect(ids).toEqual(expect.arrayContaining(["github-mention", "slack-mention", "jira-mention", "ops"]));
      expect(lines().some((line) => line.includes("routing rules seeded from file") && line.includes('"ops"'))).toBe(
        true,
      );
      expect(tasks.server.health.get(RouteService.typeName)).toBe(ServingStatus.SERVING);
    } finally {
      await tasks.close();
    }
  });

  it("refuses to start on a bad TASKS_ROUTES_FILE, naming the variable and the entry", async () => {
    const file = routesFile("- id: x\n  provider: github\n");
    const failure = composeTasks(tasksTestConfig(db, { TASKS_ROUTES_FILE: file }), {
      logger: memoryLogger("tasks").logger,
      env: {},
    });
    await expect(failure).rejects.toBeInstanceOf(ConfigError);
    await expect(failure).rejects.toMatchObject({
      variable: "TASKS_ROUTES_FILE",
      message: expect.stringContaining(`${file}: routes[0].provider`),
    });
  });
});
