import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { HealthState } from "../src/health.js";
import { createMeshServer, type MeshServer, type ServerOptions, type TlsOptions } from "../src/serve.js";
import { memoryLogger } from "../src/testing/logger.js";
import { callError } from "../src/testing/errors.js";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "hookmesh-tls-"));

interface Pem {
  cert: string;
  key: string;
}

let server: Pem; // self-signed, for 127.0.0.1 and localhost
let ca: Pem; // signs client certificates
let client: Pem; // signed by `ca`
let rogue: Pem; // self-signed client certificate no server trusts

async function openssl(...args: string[]): Promise<void> {
  await run("openssl", args, { cwd: dir });
}

function pem(name: string): Pem {
  return { cert: readFileSync(join(dir, `${name}.pem`), "utf8"), key: readFileSync(join(dir, `${name}.key`), "utf8") };
}

beforeAll(async () => {
  const req = (name: string, subject: string, ...extra: string[]) =>
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`,
      "-subj", subject, "-days", "1", ...extra);
  await Promise.all([
    req("server", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
    req("ca", "/CN=hookmesh test CA"),
    req("rogue", "/CN=rogue client"),
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=agent"),
  ]);
  await openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "client.pem", "-days", "1");
  [server, ca, client, rogue] = [pem("server"), pem("ca"), pem("client"), pem("rogue")];
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const servers: MeshServer[] = [];
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await Promise.all(servers.splice(0).map((s) => s.close(100)));
});

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

async function start(tls: TlsOptions, options: Partial<ServerOptions> = {}) {
  const { logger } = memoryLogger("tls-test");
  const health = new HealthState([TaskService.typeName], ServingStatus.SERVING);
  const mesh = createMeshServer({ routes: routes(), health, logger, tls, ...options });
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
          resolve({ status: res.statusCode ?? 0, alpn: (res.socket as import("node:tls").TLSSocket).alpnProtocol, body }),
        );
      },
    );
    req.on("error", reject);
    req.end("{}");
  });
}

describe("createMeshServer with TLS", () => {
  it("speaks gRPC over HTTP/2 with TLS", async () => {
    const { url } = await start(server);
    const transport = createGrpcTransport({ baseUrl: url, nodeOptions: { ca: server.cert } });
    expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
    expect((await createClient(TaskService, transport).getTask({ id: "tls" })).task?.id).toBe("tls");
  });

  it("speaks Connect over HTTPS/1.1", async () => {
    const { port, url } = await start(server);
    const agent = new https.Agent({ ca: server.cert, keepAlive: false });
    const res = await httpsCheck(port, { agent });
    expect(res).toEqual({ status: 200, alpn: false, body: '{"status":"SERVING"}' });
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions: { ca: server.cert } });
    expect((await createClient(TaskService, transport).getTask({ id: "h1" })).task?.id).toBe("h1");
  });

  it("serves grpc-js over TLS", async () => {
    const { port } = await start(server);
    const definition = protoLoader.loadSync(healthProtoPath, { enums: String, defaults: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const stub = new loaded.grpc.health.v1.Health(
      `127.0.0.1:${port}`,
      grpc.credentials.createSsl(Buffer.from(server.cert)),
      // SNI with an IP address is deprecated; the certificate names localhost too.
      { "grpc.ssl_target_name_override": "localhost" },
    ) as grpc.Client & Record<string, Function>;
    cleanups.push(() => stub.close());
    const res = await new Promise((resolve, reject) =>
      stub.Check!({ service: "" }, (err: grpc.ServiceError | null, out: unknown) => (err ? reject(err) : resolve(out))),
    );
    expect(res).toEqual({ status: "SERVING" });
  });

  it("fails a client that does not trust the certificate", async () => {
    const { url } = await start(server);
    const err = await callError(createClient(Health, createGrpcTransport({ baseUrl: url })).check({}));
    expect(err.message).toMatch(/self[- ]signed/i);
  });

  it("lets an in-flight HTTPS/1.1 call finish and closes its connection promptly", async () => {
    let onStarted!: () => void;
    const started = new Promise<void>((resolve) => (onStarted = resolve));
    const { server: mesh, port } = await start(server, { routes: routes(() => onStarted()) });
    const agent = new https.Agent({ ca: server.cert, keepAlive: true });
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

describe("createMeshServer with mTLS", () => {
  const mtls = () => ({ ...server, ca: ca.cert });

  it("accepts a client certificate signed by the CA, over HTTP/2 and HTTP/1.1", async () => {
    const { url, port } = await start(mtls());
    const transport = createGrpcTransport({
      baseUrl: url,
      nodeOptions: { ca: server.cert, cert: client.cert, key: client.key },
    });
    expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
    const agent = new https.Agent({ ca: server.cert, cert: client.cert, key: client.key, keepAlive: false });
    expect((await httpsCheck(port, { agent })).status).toBe(200);
  });

  it("rejects a client without a certificate", async () => {
    const { url, port } = await start(mtls());
    const transport = createGrpcTransport({ baseUrl: url, nodeOptions: { ca: server.cert } });
    await expect(createClient(Health, transport).check({})).rejects.toThrow(/certificate required/);
    const agent = new https.Agent({ ca: server.cert, keepAlive: false });
    await expect(httpsCheck(port, { agent })).rejects.toThrow(/certificate required/);
  });

  it("rejects a client certificate the CA did not sign", async () => {
    const { url, port } = await start(mtls());
    const transport = createGrpcTransport({
      baseUrl: url,
      nodeOptions: { ca: server.cert, cert: rogue.cert, key: rogue.key },
    });
    await expect(createClient(Health, transport).check({})).rejects.toBeInstanceOf(ConnectError);
    const agent = new https.Agent({ ca: server.cert, cert: rogue.cert, key: rogue.key, keepAlive: false });
    await expect(httpsCheck(port, { agent })).rejects.toThrow(/unknown ca|socket hang up|ECONNRESET/);
  });
});
