import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkDependencies, checkImport, importsOf, isProductionFile, packageOf } from "../check-dependencies.js";

describe("check-dependencies", () => {
  it("reads every import form the repository uses, and nothing inside strings or code", () => {
    const source = [
      'import { create } from "@bufbuild/protobuf";',
      'import type { Redis } from "ioredis";',
      'import * as grpc from "@grpc/grpc-js";',
      "import {",
      "  afterAll,",
      "  type TestRedis,",
      '} from "vitest";',
      'import "./side-effect.js";',
      'export { freePort } from "./net.js";',
      'export * from "./client/index.js";',
      'const tsx = import.meta.resolve("tsx");',
      'const tls = await import("node:tls");',
      'const examples = createRequire(import.meta.url)("@octokit/webhooks-examples");',
      'const body = "import x from \\"not-a-module\\"";',
      'const text = `from "neither"`;',
    ].join("\n");
    expect(importsOf(source).sort()).toEqual(
      [
        "@bufbuild/protobuf",
        "ioredis",
        "@grpc/grpc-js",
        "vitest",
        "./side-effect.js",
        "./net.js",
        "./client/index.js",
        "tsx",
        "node:tls",
        "@octokit/webhooks-examples",
      ].sort(),
    );
  });

  it("names the package of a bare specifier, and none for relative paths and builtins", () => {
    expect(packageOf("@bufbuild/protobuf/wkt")).toBe("@bufbuild/protobuf");
    expect(packageOf("vitest/config")).toBe("vitest");
    expect(packageOf("tsx")).toBe("tsx");
    expect(packageOf("../../gen/hookmesh/tasks/v1/task_pb.js")).toBeUndefined();
    expect(packageOf("node:crypto")).toBeUndefined();
    expect(packageOf("crypto")).toBeUndefined();
  });

  it("counts a workspace's src and bin, and the root's gen, as production code", () => {
    expect(isProductionFile("gateway", "src/pipeline.ts")).toBe(true);
    expect(isProductionFile("cli", "bin/hookmesh.js")).toBe(true);
    expect(isProductionFile("kit", "src/testing/redis.ts")).toBe(false);
    expect(isProductionFile("gateway", "test/harness.ts")).toBe(false);
    expect(isProductionFile("", "gen/hookmesh/tasks/v1/task_pb.ts")).toBe(true);
    expect(isProductionFile("", "bench/gateway.ts")).toBe(false);
  });

  it("wants production imports in dependencies and test imports in either list", () => {
    const workspace = {
      dir: "services/tasks",
      manifest: {
        name: "@hookmesh/tasks",
        dependencies: { "@bufbuild/protobuf": "~2.13.0" },
        devDependencies: { vitest: "^4.1.12" },
      },
    };
    expect(checkImport(workspace, "src/engine.ts", "@bufbuild/protobuf/wkt")).toBeUndefined();
    expect(checkImport(workspace, "test/engine.test.ts", "vitest")).toBeUndefined();
    expect(checkImport(workspace, "src/engine.ts", "./timeline.js")).toBeUndefined();
    expect(checkImport(workspace, "src/engine.ts", "@hookmesh/tasks")).toBeUndefined();
    expect(checkImport(workspace, "src/engine.ts", "vitest")).toBe(
      "declared in devDependencies, but production code needs it in dependencies",
    );
    expect(checkImport(workspace, "src/engine.ts", "uuid")).toBe("not declared in dependencies");
    expect(checkImport(workspace, "test/engine.test.ts", "pino")).toBe(
      "not declared in dependencies or devDependencies",
    );
  });

  it("holds a workspace inside another to its own manifest, reads .tsx, and skips built dist/", () => {
    const root = mkdtempSync(join(tmpdir(), "check-dependencies-"));
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    };
    try {
      write("package.json", JSON.stringify({ name: "root", workspaces: ["services/*", "services/dashboard/web"] }));
      write("services/dashboard/package.json", JSON.stringify({ name: "@x/dashboard", dependencies: { pg: "1" } }));
      write("services/dashboard/src/db.ts", 'import pg from "pg";\n');
      write("services/dashboard/web/package.json", JSON.stringify({ name: "@x/web", dependencies: { react: "1" } }));
      write("services/dashboard/web/src/App.tsx", 'import { useState } from "react";\nimport uPlot from "uplot";\n');
      write("services/dashboard/web/dist/assets/index.js", 'import x from "bundled";\n');
      expect(checkDependencies(root)).toEqual([
        {
          file: join("services/dashboard/web", "src/App.tsx"),
          packageJson: join("services/dashboard/web", "package.json"),
          imported: "uplot",
          problem: "not declared in dependencies",
        },
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
