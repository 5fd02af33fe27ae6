import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { TLSSocket } from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { envIdentity } from "../src/config.js";
import { HealthState } from "../src/health.js";
import { devIdentityFiles, ensureDevIdentities } from "../src/identity/dev.js";
import { type Identity, openIdentity } from "../src/identity/identity.js";
import { createMeshServer, type MeshServer, type ServerOptions } from "../src/serve.js";
import { callError } from "../src/testing/errors.js";
import { memoryLogger } from "../src/testing/logger.js";

// gRPC clients in other languages (grpc-js, Python's grpcio, buf curl) against this server's
// mTLS are in mtls-interop.test.ts; who may call what over it is in mtls.test.ts.

const TRUST_DOMAIN = "hookmesh.local";
/** The server's identity and the operator's, under one development CA. */
let home: string;
/** Another development CA, which the server's certificate does not chain to. */
let otherHome: string;
let tasks: Identity;

interface Pem {
  cert: string;
  key: string;
  ca: string;
}

/** The operator's certificate and key, and the CA bundle it trusts: what a client under that identity presents and checks. */
let operator: Pem;
/** An operator under the other CA, which does not trust the server's certificate. */
let stranger: Pem;

function pem(dir: string, name: string): Pem {
  const files = devIdentityFiles(dir, name);
  const read = (path: string) => readFileSync(path, "utf8");
  return { cert: read(files.certFile), key: read(files.keyFile), ca: read(files.caFile) };
}

beforeAll(async () => {
  [home, otherHome] = [
    mkdtempSync(join(tmpdir(), "hookmesh-tls-")),
    mkdtempSync(join(tmpdir(), "hookmesh-tls-other-")),
  ];
  await Promise.all([
    ensureDevIdentities({ home, trustDomain: TRUST_DOMAIN, names: ["tasks", "operator"] }),
    ensureDevIdentities({ home: otherHome, trustDomain: TRUST_DOMAIN, names: ["operator"] }),
  ]);
  tasks = openIdentity(envIdentity({ HOOKMESH_HOME: home }, "tasks"), memoryLogger().logger)!;
  operator = pem(home, "operator");
  stranger = pem(otherHome, "operator");
});

afterAll(() => {
  tasks.close();
  for (const dir of [home, otherHome]) rmSync(dir, { recursive: true, force: true });
});

const servers: MeshServer[] = [];
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await Promise.all(servers.splice(0).map((s) => s.close(100)));
});

/** GetTask, which the contracts open to the operator, echoes the id; `slow:<ms>` takes that long. */
function routes(started: () => void = () => {}): ServerOptions["routes"] {
  return (router) =>
    router.service(TaskService, {
      async getTask(req, ctx) {
        started();
        const slow = /^slow:(\d+)$/.exec(req.id);
        if (slow) await sleep(Number(slow[1]), undefined, { signal: ctx.signal });
        return { task: { id: req.id } };
      },
    });
}

async function start(options: Partial<ServerOptions> = {}) {
  const { logger } = memoryLogger("tls-test");
  const health = new HealthState([TaskService.typeName], ServingStatus.SERVING);
  const mesh = createMeshServer({ routes: routes(), health, logger, identity: tasks, ...options });
  servers.push(mesh);
  const { port } = await mesh.listen(0, "127.0.0.1");
  return { server: mesh, port, url: `https://127.0.0.1:${port}` };
}

/** A Connect unary call to Health.Check over HTTPS/1.1 with node:https. */
function httpsCheck(
  port: number,
  options: https.RequestOptions,
): Promise<{ status: number; alpn: string | false | null; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/grpc.health.v1.Health/Check",
        headers: { "content-type": "application/json" },
        ...options,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, alpn: (res.socket as TLSSocket).alpnProtocol, body }),
        );
      },
    );
    req.on("error", reject);
    req.end("{}");
  });
}

describe("createMeshServer with an identity", () => {
  it("speaks gRPC over HTTP/2 with TLS", async () => {
    const { url } = await start();
    const transport = createGrpcTransport({ baseUrl: url, nodeOptions: operator });
    expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
    expect((await createClient(TaskService, transport).getTask({ id: "tls" })).task?.id).toBe("tls");
  });

  it("speaks Connect over HTTPS/1.1, whether the client offers ALPN http/1.1 or no ALPN at all", async () => {
    const { port, url } = await start();
    for (const [ALPNProtocols, alpn] of [
      [["http/1.1"], "http/1.1"],
      [undefined, false],
    ] as const) {
      const agent = new https.Agent({
        ...operator,
        keepAlive: false,
        ...(ALPNProtocols && { ALPNProtocols: [...ALPNProtocols] }),
      });
      expect(await httpsCheck(port, { agent })).toEqual({ status: 200, alpn, body: '{"status":"SERVING"}' });
    }
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions: operator });
    expect((await createClient(TaskService, transport).getTask({ id: "h1" })).task?.id).toBe("h1");
  });

  it("fails a client that does not trust the server's CA, before any call reaches a handler", async () => {
    let handled = 0;
    const { url } = await start({ routes: routes(() => handled++) });
    const untrusting = [
      // The system's roots, which know nothing of a development CA.
      createGrpcTransport({ baseUrl: url }),
      // Another mesh's CA, with a certificate of its own that names an identity the server knows.
      createGrpcTransport({ baseUrl: url, nodeOptions: stranger }),
    ];
    for (const transport of untrusting) {
      const err = await callError(createClient(TaskService, transport).getTask({ id: "x" }));
      // The server sends its chain up to the development CA, a root this client does not trust.
      expect(err.message).toMatch(/self-signed certificate in certificate chain/);
    }
    expect(handled).toBe(0);
  });

  it("lets an in-flight HTTPS/1.1 call finish and closes its connection promptly", async () => {
    let onStarted!: () => void;
    const started = new Promise<void>((resolve) => (onStarted = resolve));
    const { server: mesh, port } = await start({ routes: routes(() => onStarted()) });
    const agent = new https.Agent({ ...operator, keepAlive: true });
    cleanups.push(() => agent.destroy());
    const call = new Promise<number>((resolve, reject) => {
      const req = https.request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/hookmesh.tasks.v1.TaskService/GetTask",
          headers: { "content-type": "application/json" },
          agent,
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ id: "slow:300" }));
    });
    await started;
    const began = performance.now();
    const closing = mesh.close(5_000);
    expect(await call).toBe(200);
    await closing;
    expect(performance.now() - began).toBeLessThan(2_000);
  });
});
