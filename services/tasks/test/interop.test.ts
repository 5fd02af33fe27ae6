import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { devIdentityFiles, ServingStatus } from "@hookmesh/kit";
import { memoryLogger, pythonWithGrpc, type TestRedis, testIdentities, testRedis } from "@hookmesh/kit/testing";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { type RunningTasks, startTasks } from "../src/testing.js";

const run = promisify(execFile);
const protoDir = fileURLToPath(new URL("../../../proto", import.meta.url));
const buf = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));
const TASKS = TaskService.typeName;
const WORKERS = WorkerService.typeName;
const ROUTES = RouteService.typeName;

type Stub = grpc.Client & Record<string, Function>;

function loadStub<T>(
  file: string,
  includeDirs: string[],
  pick: (pkg: T) => grpc.ServiceClientConstructor,
  port: number,
  credentials: grpc.ChannelCredentials,
): Stub {
  const definition = protoLoader.loadSync(file, {
    includeDirs,
    keepCase: true,
    enums: String,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  const Ctor = pick(grpc.loadPackageDefinition(definition) as unknown as T);
  // localhost, a DNS SAN of development certificates: grpc-js sends the target's host as the TLS
  // server name, which Node deprecates for an IP address.
  return new Ctor(`localhost:${port}`, credentials) as Stub;
}

function taskStub(port: number, credentials: grpc.ChannelCredentials): Stub {
  type Pkg = { hookmesh: { tasks: { v1: { TaskService: grpc.ServiceClientConstructor } } } };
  return loadStub<Pkg>(
    "hookmesh/tasks/v1/task_service.proto",
    [protoDir],
    (p) => p.hookmesh.tasks.v1.TaskService,
    port,
    credentials,
  );
}

function workerStub(port: number, credentials: grpc.ChannelCredentials): Stub {
  type Pkg = { hookmesh: { tasks: { v1: { WorkerService: grpc.ServiceClientConstructor } } } };
  return loadStub<Pkg>(
    "hookmesh/tasks/v1/worker_service.proto",
    [protoDir],
    (p) => p.hookmesh.tasks.v1.WorkerService,
    port,
    credentials,
  );
}

function healthStub(port: number, credentials = grpc.credentials.createInsecure()): Stub {
  type Pkg = { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  return loadStub<Pkg>(healthProtoPath, [], (p) => p.grpc.health.v1.Health, port, credentials);
}

/** A grpc-js unary call, resolving with the response or the ServiceError. */
function unary(stub: Stub, method: string, request: object): Promise<unknown> {
  return new Promise((resolve) => {
    stub[method]!(request, { deadline: Date.now() + 5_000 }, (err: grpc.ServiceError | null, res: unknown) =>
      resolve(err ?? res),
    );
  });
}

/** The response of a call that must succeed; grpc-js responses are plain objects. */
async function ok(call: Promise<unknown>): Promise<Record<string, any>> {
  const result = await call;
  if (result instanceof Error) throw result;
  return result as Record<string, any>;
}

async function failed(call: Promise<unknown>): Promise<grpc.ServiceError> {
  const result = await call;
  if (!(result instanceof Error)) throw new Error(`expected an error, got ${JSON.stringify(result)}`);
  return result as grpc.ServiceError;
}

/** An issue comment by the repository owner that mentions hookmesh: the default rules queue it. */
function githubEvent(deliveryId: string) {
  return {
    provider: "PROVIDER_GITHUB",
    delivery_id: deliveryId,
    event_type: "issue_comment",
    action: "created",
    text: "@hookmesh please fix this",
    actor: { login: "octocat", association: "OWNER" },
    subject: { key: `github:octo/hello#${deliveryId}` },
    raw_body: Buffer.from('{"action":"created"}'),
    content_type: "application/json",
  };
}

const python = await pythonWithGrpc();

/**
 * ListTasks with Python's grpcio over TLS trusting `ca`, presenting `key` and `cert` when given,
 * as a generic call with an empty request: the script needs no generated code. Prints the status
 * and the response bytes in hex, or the status and its details.
 */
const PYTHON_LIST_TASKS = `
import json, sys, grpc
target, ca, *client = sys.argv[1:]
key, cert = (open(path, "rb").read() for path in client) if client else (None, None)
credentials = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read(), private_key=key, certificate_chain=cert)
with grpc.secure_channel(target, credentials) as channel:
    list_tasks = channel.unary_unary(
        "/${TaskService.typeName}/ListTasks", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    try:
        print(json.dumps({"code": "OK", "response": list_tasks(b"", timeout=10).hex()}))
    except grpc.RpcError as err:
        print(json.dumps({"code": err.code().name, "details": err.details()}))
`;

describe("tasks server interop under mTLS", () => {
  let db: TestRedis;
  let running: RunningTasks;
  let port: number;
  let home: string;
  /** TaskService as the identities its contract names: SubmitEvent is the gateway's, reading is the operator's. */
  let asGateway: Stub;
  let asOperator: Stub;

  /** The CA that issued the service's certificate, which every client here trusts. */
  let ca: Buffer;

  /** grpc-js TLS presenting `name`'s certificate, or none without a name. */
  const tls = (name?: string) => {
    if (name === undefined) return grpc.credentials.createSsl(ca);
    const { keyFile, certFile } = devIdentityFiles(home, name);
    return grpc.credentials.createSsl(ca, readFileSync(keyFile), readFileSync(certFile));
  };

  /** buf curl as the operator; `--cacert` because the test CA is in no system store. */
  const bufCurl = async (...args: string[]) => {
    const { caFile, certFile, keyFile } = devIdentityFiles(home, "operator");
    const curl = ["curl", "--protocol", "grpc", "--cacert", caFile, "--cert", certFile, "--key", keyFile, ...args];
    return (await run(buf, curl, { timeout: 15_000 })).stdout;
  };

  /** ListTasks from Python's grpcio, as the operator or with no client certificate. */
  const pythonListTasks = async (as: "operator" | "no certificate") => {
    const { caFile, keyFile, certFile } = devIdentityFiles(home, "operator");
    const client = as === "operator" ? [keyFile, certFile] : [];
    const { stdout } = await run(python!, ["-c", PYTHON_LIST_TASKS, `127.0.0.1:${port}`, caFile, ...client], {
      timeout: 15_000,
    });
    return JSON.parse(stdout) as { code: string; response?: string; details?: string };
  };

  beforeAll(async () => {
    const identities = await testIdentities();
    home = identities.home;
    ca = readFileSync(devIdentityFiles(home, "tasks").caFile);
    db = await testRedis("tasks-interop");
    running = await startTasks(db, memoryLogger("tasks").logger, { env: identities.env });
    port = running.port;
    asGateway = taskStub(port, tls("gateway"));
    asOperator = taskStub(port, tls("operator"));
  });

  afterAll(async () => {
    asGateway?.close();
    asOperator?.close();
    await running?.close();
    await db?.cleanup();
  });

  it("creates a task from grpc-js as the gateway, and returns it as a duplicate the second time", async () => {
    const first = await ok(unary(asGateway, "SubmitEvent", { event: githubEvent("interop-1") }));
    expect(first.duplicate).toBe(false);
    expect(first.task).toMatchObject({
      state: "TASK_STATE_QUEUED",
      max_attempts: 3,
      event: { provider: "PROVIDER_GITHUB", delivery_id: "interop-1" },
    });
    const again = await ok(unary(asGateway, "SubmitEvent", { event: githubEvent("interop-1") }));
    expect(again.duplicate).toBe(true);
    expect(again.task.id).toBe(first.task.id);
  });

  it("gets and lists tasks from grpc-js as the operator", async () => {
    const { task } = await ok(unary(asGateway, "SubmitEvent", { event: githubEvent("interop-2") }));
    const got = await ok(unary(asOperator, "GetTask", { id: task.id }));
    expect(got.task.id).toBe(task.id);
    expect(Buffer.from(got.task.event.raw_body).toString()).toBe('{"action":"created"}');
    expect(got.task.create_time.seconds).toMatch(/^\d+$/);
    const listed = await ok(unary(asOperator, "ListTasks", { page_size: 10 }));
    expect(listed.tasks.map((t: { id: string }) => t.id)).toContain(task.id);
    expect(listed.tasks[0].id).toBe(task.id); // newest first
    expect(listed.tasks[0].event.raw_body).toHaveLength(0); // BASIC by default
  });

  it("gives grpc-js NOT_FOUND for an unknown id and INVALID_ARGUMENT for a missing delivery id", async () => {
    const missing = await failed(unary(asOperator, "GetTask", { id: "no-such-task" }));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.details).toBe("task no-such-task not found");
    const invalid = await failed(unary(asGateway, "SubmitEvent", { event: { ...githubEvent(""), delivery_id: "" } }));
    expect(invalid.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(invalid.details).toContain("event.delivery_id");
  });

  it("refuses grpc-js without a client certificate, and identities the contract does not name", async () => {
    const anonymous = taskStub(port, tls());
    try {
      expect((await failed(unary(anonymous, "ListTasks", {}))).code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      anonymous.close();
    }
    // The refusal names the caller: its certificate was verified, and its identity is not in the contract.
    const gatewayLists = await failed(unary(asGateway, "ListTasks", {}));
    expect(gatewayLists.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(gatewayLists.details).toContain('"gateway"');
    const operatorSubmits = await failed(unary(asOperator, "SubmitEvent", { event: githubEvent("interop-refused") }));
    expect(operatorSubmits.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(operatorSubmits.details).toContain('"operator"');
  });

  it("leases, completes and shows a task succeeded through grpc-js WorkerService as the agent", async () => {
    const workers = workerStub(port, tls("agent"));
    try {
      const { task } = await ok(unary(asGateway, "SubmitEvent", { event: githubEvent("interop-lease") }));
      expect(task.state).toBe("TASK_STATE_QUEUED");
      // Other tests' tasks may be queued too: lease everything ready, then finish each lease.
      const leased = await ok(
        unary(workers, "LeaseTasks", { worker_id: "interop-worker", max_tasks: 100, wait: { seconds: 2 } }),
      );
      const leases = leased.leases as {
        task: Record<string, any>;
        lease_id: string;
        expire_time: { seconds: string };
        heartbeat_interval: { seconds: string };
      }[];
      const mine = leases.find((l) => l.task.id === task.id);
      expect(mine).toBeDefined();
      expect(mine!.task).toMatchObject({ state: "TASK_STATE_RUNNING", attempt: 1, worker_id: "interop-worker" });
      expect(mine!.lease_id).not.toBe("");
      expect(Number(mine!.expire_time.seconds)).toBeGreaterThan(Date.now() / 1000);
      expect(mine!.heartbeat_interval).toBeDefined();

      for (const lease of leases) {
        const done = await ok(
          unary(workers, "CompleteTask", {
            task_id: lease.task.id,
            lease_id: lease.lease_id,
            result: { outcome: "RUN_OUTCOME_SUCCEEDED", answer: "fixed", exit_code: 0 },
          }),
        );
        expect(done.task).toMatchObject({
          id: lease.task.id,
          state: "TASK_STATE_SUCCEEDED",
          result: { answer: "fixed" },
        });
      }

      const got = await ok(unary(asOperator, "GetTask", { id: task.id, view: "TASK_VIEW_BASIC" }));
      expect(got.task.state).toBe("TASK_STATE_SUCCEEDED");
      expect(got.task.transitions.map((t: { state: string }) => t.state)).toEqual([
        "TASK_STATE_QUEUED",
        "TASK_STATE_RUNNING",
        "TASK_STATE_SUCCEEDED",
      ]);
      const stale = await failed(unary(workers, "Heartbeat", { task_id: task.id, lease_id: mine!.lease_id }));
      expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    } finally {
      workers.close();
    }
  });

  it("serves health to grpc-js, with any identity and with none", async () => {
    const health = healthStub(port, tls("dashboard"));
    const anonymous = healthStub(port, tls());
    try {
      expect(await ok(unary(health, "Check", { service: TASKS }))).toEqual({ status: "SERVING" });
      expect(await ok(unary(health, "Check", { service: WORKERS }))).toEqual({ status: "SERVING" });
      expect(await ok(unary(health, "Check", { service: ROUTES }))).toEqual({ status: "SERVING" });
      expect(await ok(unary(health, "Check", { service: "" }))).toEqual({ status: "SERVING" });
      expect((await failed(unary(health, "Check", { service: "nope.Nope" }))).code).toBe(grpc.status.NOT_FOUND);
      // Health is open even to a client with no certificate, as probes and load balancers have none.
      expect(await ok(unary(anonymous, "Check", { service: TASKS }))).toEqual({ status: "SERVING" });
    } finally {
      health.close();
      anonymous.close();
    }
  });

  it("lists its services to buf curl as the operator through reflection", async () => {
    const services = (await bufCurl("--list-services", `https://127.0.0.1:${port}`)).trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining([TASKS, WORKERS, ROUTES, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]),
    );
  });

  it("answers buf curl as the operator with no schema but reflection", async () => {
    await ok(unary(asGateway, "SubmitEvent", { event: githubEvent("interop-curl") }));
    const out = await bufCurl("-d", "{}", `https://127.0.0.1:${port}/${TASKS}/ListTasks`);
    const body = JSON.parse(out) as { tasks: { event: { deliveryId: string; provider: string }; state: string }[] };
    expect(body.tasks.length).toBeGreaterThan(0);
    expect(body.tasks[0]).toMatchObject({
      state: "TASK_STATE_QUEUED",
      event: { provider: "PROVIDER_GITHUB", deliveryId: "interop-curl" },
    });
  });

  it.skipIf(python === undefined)(
    "answers Python grpcio's ListTasks as the operator, and UNAUTHENTICATED without a client certificate (skipped without python3-grpcio: apt-get install python3-grpcio)",
    async () => {
      await ok(unary(asGateway, "SubmitEvent", { event: githubEvent("interop-python") }));
      const listed = await pythonListTasks("operator");
      expect(listed.code).toBe("OK");
      // Newest first, so the task just submitted is in the (undecoded) response.
      expect(Buffer.from(listed.response!, "hex").toString("latin1")).toContain("interop-python");
      expect((await pythonListTasks("no certificate")).code).toBe("UNAUTHENTICATED");
    },
  );
});

/** A TCP proxy to Redis that can be cut and restored on the same port. */
class RedisProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.once("close", () => this.sockets.delete(socket));
        socket.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops accepting and drops every proxied connection, as if Redis went away. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

describe("tasks health follows its Redis connection", () => {
  let db: TestRedis;
  let proxy: RedisProxy;
  let running: RunningTasks;
  let url: string;

  beforeEach(async () => {
    db = await testRedis("tasks-interop-health");
    const target = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
    proxy = new RedisProxy({ host: target.hostname, port: Number(target.port || 6379) });
    await proxy.open();
    // Through a proxy that the test can cut, as if Redis went away.
    running = await startTasks(db, memoryLogger("tasks").logger, {
      env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}` },
    });
    url = running.url;
  });

  afterEach(async () => {
    await running?.close();
    await proxy?.cut();
    await db?.cleanup();
  });

  it("goes NOT_SERVING and answers Unavailable when Redis is lost, and SERVING again when it is back", async () => {
    const transport = createGrpcTransport({ baseUrl: url });
    const health = createClient(Health, transport);
    const client = createClient(TaskService, transport);
    const check = async () => (await health.check({ service: TASKS })).status;
    const event = { provider: Provider.GITHUB, deliveryId: "while-up" };

    expect(await check()).toBe(ServingStatus.SERVING);
    expect((await client.submitEvent({ event })).duplicate).toBe(false);

    await proxy.cut();
    await expect.poll(check, { timeout: 10_000, interval: 50 }).toBe(ServingStatus.NOT_SERVING);
    expect((await health.check({})).status).toBe(ServingStatus.NOT_SERVING);
    const err = await client.submitEvent({ event: { ...event, deliveryId: "while-down" } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.rawMessage).toBe("task store unavailable");

    await proxy.open();
    await expect.poll(check, { timeout: 10_000, interval: 50 }).toBe(ServingStatus.SERVING);
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    const after = await client.submitEvent({ event: { ...event, deliveryId: "after" } });
    expect(after.duplicate).toBe(false);
    expect((await client.submitEvent({ event })).duplicate).toBe(true);
  });

  it("streams the loss and the recovery to a grpc-js Watch", async () => {
    const stub = healthStub(Number(new URL(url).port));
    const call = stub.Watch!({ service: TASKS }) as grpc.ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    const waiters: { want: number; resolve: () => void }[] = [];
    call.on("data", (res: { status: string }) => {
      seen.push(res.status);
      for (const w of waiters) if (seen.length >= w.want) w.resolve();
    });
    call.on("error", () => {});
    const until = (want: number) =>
      new Promise<void>((resolve) => (seen.length >= want ? resolve() : waiters.push({ want, resolve })));
    try {
      await until(1);
      await proxy.cut();
      await until(2);
      await proxy.open();
      await until(3);
      expect(seen).toEqual(["SERVING", "NOT_SERVING", "SERVING"]);
    } finally {
      call.cancel();
      stub.close();
    }
  });
});
