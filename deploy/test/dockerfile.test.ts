import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { DockerfileParser, type Instruction } from "dockerfile-ast";
import { validate } from "dockerfile-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * No container engine runs here, so the image is checked offline: the Dockerfile parses and
 * passes dockerfile-utils' validation (the linter of the Docker language server; hadolint is
 * in neither Debian nor npm), its stages have the pieces the deployment relies on, every path
 * it copies exists and is in the build context, and its health check script works. The
 * stages' commands themselves run in e2e/build.test.ts (npm ci --omit=dev, npm run build).
 */
const root = fileURLToPath(new URL("../..", import.meta.url));
const text = readFileSync(join(root, "Dockerfile"), "utf8");
const dockerfile = DockerfileParser.parse(text);
const instructions = dockerfile.getInstructions();

/** The instructions of stage `name` (the unnamed last stage: null), FROM included. */
function stage(name: string | null): Instruction[] {
  const froms = dockerfile.getFROMs();
  const index = froms.findIndex((from) => from.getBuildStage() === name);
  expect(index, `stage ${name}`).toBeGreaterThanOrEqual(0);
  const start = froms[index]!.getRange().start.line;
  const end = froms[index + 1]?.getRange().start.line ?? Number.POSITIVE_INFINITY;
  return instructions.filter((i) => i.getRange().start.line >= start && i.getRange().start.line < end);
}

/** An instruction's text after its keyword, flags included, continuation lines joined. */
const args = (i: Instruction) =>
  i
    .getTextContent()
    .replace(/\\\n\s*/g, " ")
    .replace(/^\s*[A-Z]+\s+/, "")
    .trim();
const of = (list: Instruction[], keyword: string) => list.filter((i) => i.getKeyword() === keyword).map(args);

describe("Dockerfile", () => {
  it("passes dockerfile-utils' validation, which does catch a broken one", () => {
    expect(validate(text)).toEqual([]);
    expect(validate("FROM node:24 AS a\nCOPY\nHEALTHCHECK --interval=x CMD true\n").length).toBeGreaterThan(0);
  });

  it("builds on a supported Node LTS, 24", () => {
    const nodeImage = of(instructions, "ARG").find((a) => a.startsWith("NODE_IMAGE="));
    expect(nodeImage).toMatch(/^NODE_IMAGE=node:24-[a-z]+-slim$/);
    for (const from of dockerfile.getFROMs()) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's ARG, not JavaScript's
      expect(["${NODE_IMAGE}", "base", "runtime"]).toContain(from.getImage());
    }
  });

  it("compiles in a stage with dev dependencies and ships production dependencies and dist/ only", () => {
    const build = stage("build");
    expect(of(build, "RUN")).toContain("npm ci --ignore-scripts --no-audit --no-fund");
    expect(of(build, "RUN")).toContain("npm run build");
    const runtime = stage("runtime");
    expect(of(runtime, "RUN").join("\n")).toMatch(/^npm ci --omit=dev --ignore-scripts\b/);
    expect(of(runtime, "COPY")).toEqual(["--from=build /app/dist dist", expect.stringMatching(/^deploy\/docker\//)]);
    expect(of(runtime, "ENV")).toContain("NODE_ENV=production");
  });

  it("runs as a non-root user, by number, under tini, with no TypeScript loader", () => {
    for (const name of ["runtime", "agent"]) {
      expect(of(stage(name), "USER").at(-1), name).toBe("1000:1000");
    }
    expect(of(stage("base"), "RUN").join("\n")).toMatch(/apt-get install -y --no-install-recommends tini/);
    const [entrypoint] = of(stage("runtime"), "ENTRYPOINT");
    expect(JSON.parse(entrypoint!)).toEqual(["/usr/bin/tini", "--", "node"]);
    expect(text).not.toMatch(/ENTRYPOINT.*tsx|CMD.*tsx|--import/);
    for (const cmd of of(instructions, "CMD")) {
      const [entry] = JSON.parse(cmd) as string[];
      expect(existsSync(join(root, entry!.replace(/^dist\//, "").replace(/\.js$/, ".ts"))), entry).toBe(true);
    }
  });

  it("checks health on the admin port with Node, as the slim image has no curl", () => {
    const [healthcheck] = of(stage("runtime"), "HEALTHCHECK");
    expect(healthcheck).toMatch(/CMD \["node", "\/app\/deploy\/docker\/healthcheck\.mjs"\]$/);
    expect(healthcheck).toMatch(/--interval=\d+s/);
  });

  it("adds git and bubblewrap in the agent target only, and says how to add Claude Code", () => {
    expect(of(stage("agent"), "RUN").join("\n")).toMatch(
      /install -y --no-install-recommends bubblewrap ca-certificates git/,
    );
    expect(of(stage("runtime"), "RUN").join("\n")).not.toMatch(/bubblewrap|git/);
    expect(text).toMatch(/npm install -g @anthropic-ai\/claude-code/);
    // The default target (the last stage) is the plain runtime.
    expect(dockerfile.getFROMs().at(-1)!.getImage()).toBe("runtime");
  });

  it("copies only paths that exist and that .dockerignore lets into the context", () => {
    const ignored = readFileSync(join(root, ".dockerignore"), "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.startsWith("#"));
    for (const secret of ["secrets", ".hookmesh", ".git", "**/node_modules", "dist"]) expect(ignored).toContain(secret);
    for (const copy of of(instructions, "COPY").filter((c) => !c.startsWith("--from="))) {
      const sources = copy.split(/\s+/).slice(0, -1);
      for (const source of sources) {
        expect(existsSync(join(root, source)), source).toBe(true);
        expect(ignored, source).not.toContain(source.split("/")[0]);
      }
    }
  });
});

describe("deploy/docker/healthcheck.mjs", () => {
  const script = join(root, "deploy/docker/healthcheck.mjs");
  const run = promisify(execFile);
  let server: Server;
  let status = 200;
  let port: number;

  beforeAll(async () => {
    server = createServer((request, response) => {
      response.statusCode = request.url === "/livez" ? status : 404;
      response.end();
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("exits 0 when /livez answers 200, 1 when it fails or nothing listens", async () => {
    status = 200;
    await expect(run(process.execPath, [script, String(port)])).resolves.toBeDefined();
    status = 503;
    await expect(run(process.execPath, [script, String(port)])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("answered 503"),
    });
    server.close();
    await expect(run(process.execPath, [script, String(port)])).rejects.toMatchObject({ code: 1 });
  });
});
