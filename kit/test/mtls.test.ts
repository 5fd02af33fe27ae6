import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { Code, type ConnectRouter, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { type Peer, peerKey } from "../src/auth/peer.js";
import { createOperatorToken, OperatorTokens } from "../src/auth/tokens.js";
import { createClientFactory } from "../src/client/index.js";
import { envIdentity } from "../src/config.js";
import { HealthState, healthRoutes } from "../src/health.js";
import { devIdentityFiles, ensureDevIdentities } from "../src/identity/dev.js";
import { clientTlsOptions, type Identity, openIdentity } from "../src/identity/identity.js";
import { createMeshServer } from "../src/serve.js";
import { callError } from "../src/testing/errors.js";
import { memoryLogger } from "../src/testing/logger.js";

const TRUST_DOMAIN = "hookmesh.local";
const tasksId = `spiffe://${TRUST_DOMAIN}/tasks`;
const operatorId = `spiffe://${TRUST_DOMAIN}/operator`;
const operatorToken = createOperatorToken("operator");
const homes: string[] = [];
const cleanups: (() => unknown)[] = [];
let home: string;
/** Another CA's home, whose identities no server of `home` trusts, though their names are the same. */
let rogueHome: string;

function tempHome(): string {
  const dir = mkdtempSync(join(tmpdir(), "hookmesh-mtls-"));
  homes.push(dir);
  return dir;
}

async function devHome(names: readonly string[]): Promise<string> {
  const dir = tempHome();
  await ensureDevIdentities({ home: dir, trustDomain: TRUST_DOMAIN, names });
  return dir;
}

beforeAll(async () => {
  [home, rogueHome] = await Promise.all([devHome(["tasks", "gateway", "agent", "operator"]), devHome(["operator"])]);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => {
  for (const dir of homes) rmSync(dir, { recursive: true, force: true });
});

function identity(name: string, from = home, logger = memoryLogger().logger): Identity {
  const opened = openIdentity(envIdentity({ HOOKMESH_HOME: from }, name), logger, { debounceMs: 50 })!;
  cleanups.push(() => opened.close());
  return opened;
}

const pem = (path: string) => readFileSync(path, "utf8");

/** `name`'s certificate and key under `from`, for clients that are not kit's. */
function certificate(name: string, from = home): { cert: string; key: string } {
  const files = devIdentityFiles(from, name);
  return { cert: pem(files.certFile), key: pem(files.keyFile) };
}

/**
 * A kit server under `as`, which enforces the contracts' access policy (GetTask: operator and
 * dashboard) and takes the operator's bearer token. GetTask answers with the caller's SPIFFE
 * id; `peers` has every caller its handler saw.
 */
async function startServer(as: Identity) {
  const peers: (Peer | undefined)[] = [];
  const routes = (router: ConnectRouter) =>
    router.service(TaskService, {
      getTask(_req, ctx) {
        const peer = ctx.values.get(peerKey);
        peers.push(peer);
        return { task: { id: peer?.id ?? "anonymous" } };
      },
    });
  const { logger } = memoryLogger("server");
  const health = new HealthState([TaskService.typeName], ServingStatus.SERVING);
  const tokens = OperatorTokens.parse(operatorToken.line);
  const server = createMeshServer({ routes, health, logger, identity: as, tokens });
  const { port } = await server.listen(0, "127.0.0.1");
  cleanups.push(() => server.close(100));
  return { url: `https://127.0.0.1:${port}`, port, peers };
}

function clients(as: Identity) {
  const factory = createClientFactory({ logger: memoryLogger().logger, identity: as, retry: { maxAttempts: 1 } });
  cleanups.push(() => factory.close());
  return factory;
}

/**
 * Transports over TLS, HTTP/2 and HTTP/1.1, that trust the mesh's CA and present `presented`
 * or, without it, no certificate at all: a health probe, a browser, a script.
 */
function tlsTransports(url: string, presented?: { cert: string; key: string }) {
  const nodeOptions = { ca: pem(join(home, "tls", "ca.crt")), ...presented };
  return [
    createGrpcTransport({ baseUrl: url, nodeOptions }),
    createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions }),
  ];
}

/** Expects `call` to fail as the authorization interceptor refuses a caller with neither a verified certificate nor a token. */
async function expectAnonymousRefusal(call: Promise<unknown>): Promise<void> {
  const err = await callError(call);
  expect([err.code, err.rawMessage]).toEqual([
    Code.Unauthenticated,
    "no credentials: present a client certificate or an Authorization: Bearer token",
  ]);
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
const tokenPeer: Peer = { id: "token:operator", name: "operator", via: "token" };

/** Resolves once `identity` has taken a rotated certificate into use. */
function rotated(identity: Identity): Promise<void> {
  return new Promise((resolve) => {
    const unsubscribe = identity.onChange(() => {
      unsubscribe();
      resolve();
    });
  });
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The serial number of the certificate a server presents to a new connection. */
function serverSerial(port: number, client: Identity): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: "127.0.0.1", port, ALPNProtocols: ["h2"], ...clientTlsOptions(client, tasksId) },
      () => {
        resolve(socket.getPeerX509Certificate()!.serialNumber);
        socket.destroy();
      },
    );
    socket.on("error", reject);
  });
}

describe("mTLS between kit servers and kit clients", () => {
  it("gives the handler the caller's SPIFFE id, over HTTP/2 and HTTP/1.1", async () => {
    const operator = identity("operator");
    const server = await startServer(identity("tasks"));

    const res = await clients(operator).client(TaskService, server.url, "tasks").getTask({ id: "x" });
    expect(res.task?.id).toBe(operatorId);
    const overHttp1 = createConnectTransport({
      baseUrl: server.url,
      httpVersion: "1.1",
      nodeOptions: clientTlsOptions(operator, tasksId),
    });
    expect((await createClient(TaskService, overHttp1).getTask({ id: "y" })).task?.id).toBe(operatorId);
    expect(server.peers).toEqual([
      { id: operatorId, name: "operator", via: "mtls" },
      { id: operatorId, name: "operator", via: "mtls" },
    ]);
  });

  it("refuses a verified identity that the method's access option does not name", async () => {
    const server = await startServer(identity("tasks"));
    const err = await callError(
      clients(identity("gateway")).client(TaskService, server.url, "tasks").getTask({ id: "x" }),
    );
    expect([err.code, err.rawMessage]).toEqual([
      Code.PermissionDenied,
      'identity "gateway" may not call /hookmesh.tasks.v1.TaskService/GetTask',
    ]);
    expect(server.peers).toEqual([]);
  });

  it("completes the handshake without a client certificate: health answers, anything else is Unauthenticated", async () => {
    const server = await startServer(identity("tasks"));
    for (const transport of tlsTransports(server.url)) {
      expect((await createClient(Health, transport).check({ service: TaskService.typeName })).status).toBe(
        ServingStatus.SERVING,
      );
      await expectAnonymousRefusal(createClient(TaskService, transport).getTask({ id: "x" }));
    }
    expect(server.peers).toEqual([]);
  });

  it("takes a certificate from another CA for no certificate, whatever identity it names", async () => {
    const server = await startServer(identity("tasks"));
    // The handshake completes (a TLS refusal would be Unavailable), but an unverified
    // certificate proves nothing, so the caller is anonymous.
    for (const transport of tlsTransports(server.url, certificate("operator", rogueHome))) {
      await expectAnonymousRefusal(createClient(TaskService, transport).getTask({ id: "x" }));
    }
    expect(server.peers).toEqual([]);
  });

  it("takes an operator's bearer token over TLS without a client certificate, and refuses an invalid one", async () => {
    const server = await startServer(identity("tasks"));
    for (const transport of tlsTransports(server.url)) {
      const tasks = createClient(TaskService, transport);
      expect((await tasks.getTask({ id: "x" }, bearer(operatorToken.token))).task?.id).toBe(tokenPeer.id);
      const err = await callError(tasks.getTask({ id: "x" }, bearer(createOperatorToken("operator").token)));
      expect([err.code, err.rawMessage]).toEqual([Code.Unauthenticated, "invalid bearer token"]);
    }
    expect(server.peers).toEqual([tokenPeer, tokenPeer]);
  });

  it("refuses, in the kit client, a server that presents another identity", async () => {
    const server = await startServer(identity("agent"));
    const err = await callError(
      clients(identity("operator")).client(TaskService, server.url, "tasks").getTask({ id: "x" }),
    );
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe(
      `https://127.0.0.1:${server.port}: server identity mismatch: expected ${tasksId}, got spiffe://${TRUST_DOMAIN}/agent`,
    );
    expect(server.peers).toEqual([]);
  });

  it("needs the server's identity name and an https URL for every downstream", () => {
    const factory = clients(identity("gateway"));
    expect(() => factory.client(TaskService, "https://127.0.0.1:1")).toThrow(/identity name its server must present/);
    expect(() => factory.client(TaskService, "http://127.0.0.1:1", "tasks")).toThrow(/https/);
    factory.client(TaskService, "https://127.0.0.1:2", "tasks");
    expect(() => factory.client(TaskService, "https://127.0.0.1:2", "agent")).toThrow(/expected to be tasks/);
  });
});

describe("rotation without restarts", () => {
  it("serves new connections with the rotated server certificate", async () => {
    const dir = await devHome(["tasks", "operator"]);
    const tasks = identity("tasks", dir);
    const operator = identity("operator", dir);
    const server = await startServer(tasks);
    const before = await serverSerial(server.port, operator);

    const changes = Promise.all([rotated(tasks), rotated(operator)]);
    await ensureDevIdentities({ home: dir, trustDomain: TRUST_DOMAIN, names: ["tasks", "operator"], reissue: true });
    await changes;

    const after = await serverSerial(server.port, operator);
    expect(after).not.toBe(before);
    expect(after).toBe(tasks.current().serialNumber);
    const res = await clients(operator).client(TaskService, server.url, "tasks").getTask({ id: "x" });
    expect(res.task?.id).toBe(operatorId);
  });

  it("presents the rotated client certificate on the kit client's next connection", async () => {
    const dir = await devHome(["tasks", "gateway"]);
    const gateway = identity("gateway", dir);
    // A plain HTTP/2 server that records the certificate each new connection presents.
    const files = devIdentityFiles(dir, "tasks");
    const presented: string[] = [];
    const observer = http2.createSecureServer(
      {
        cert: pem(files.certFile),
        key: pem(files.keyFile),
        ca: pem(files.caFile),
        requestCert: true,
        rejectUnauthorized: true,
      },
      connectNodeAdapter({ routes: healthRoutes(new HealthState([], ServingStatus.SERVING)) }),
    );
    observer.on("secureConnection", (socket: tls.TLSSocket) =>
      presented.push(socket.getPeerX509Certificate()!.serialNumber),
    );
    const sessions = new Set<http2.Http2Session>();
    observer.on("session", (session) => sessions.add(session));
    await new Promise<void>((resolve) => observer.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      for (const session of sessions) session.destroy();
      return new Promise((resolve) => observer.close(resolve));
    });
    const url = `https://127.0.0.1:${(observer.address() as AddressInfo).port}`;
    const health = clients(gateway).client(Health, url, "tasks");

    await health.check({});
    const first = gateway.current().serialNumber;
    const change = rotated(gateway);
    await ensureDevIdentities({ home: dir, trustDomain: TRUST_DOMAIN, names: ["gateway"], reissue: true });
    await change;
    await health.check({});

    expect(presented).toEqual([first, gateway.current().serialNumber]);
    expect(first).not.toBe(gateway.current().serialNumber);
  });

  it("keeps the identity in use when a rotated pair does not match, and logs it", async () => {
    const dir = await devHome(["tasks", "operator", "agent"]);
    const { logger, lines } = memoryLogger("tasks");
    const tasks = identity("tasks", dir, logger);
    const operator = identity("operator", dir);
    const server = await startServer(tasks);
    const serial = tasks.current().serialNumber;

    copyFileSync(devIdentityFiles(dir, "agent").keyFile, devIdentityFiles(dir, "tasks").keyFile);
    await until(() => lines().some((line) => line.includes("rotated identity rejected")));

    const rejected = JSON.parse(lines().find((line) => line.includes("rotated identity rejected"))!);
    expect(rejected).toMatchObject({ level: 50, identity: tasksId, serialNumber: serial });
    expect(rejected.reason).toMatch(/tasks\.key: does not match the certificate/);
    expect(tasks.current().serialNumber).toBe(serial);
    expect(await serverSerial(server.port, operator)).toBe(serial);
    const res = await clients(operator).client(TaskService, server.url, "tasks").getTask({ id: "x" });
    expect(res.task?.id).toBe(operatorId);
  });
});
