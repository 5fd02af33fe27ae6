import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  create,
  createFileRegistry,
  type DescMethodUnary,
  fromBinary,
  getOption,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  file_google_protobuf_empty,
} from "@bufbuild/protobuf/wkt";
import {
  type CallOptions,
  Code,
  type ConnectRouter,
  createClient,
  createRouterTransport,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection, type ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { access } from "../../gen/hookmesh/auth/v1/auth_pb.js";
import { file_hookmesh_tasks_v1_task_service, TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { authorizationInterceptor } from "../src/auth/authorize.js";
import { type Peer, peerKey } from "../src/auth/peer.js";
import { createOperatorToken, OperatorTokens } from "../src/auth/tokens.js";
import { envIdentity } from "../src/config.js";
import { HealthState, ServingStatus } from "../src/health.js";
import { ensureDevIdentities } from "../src/identity/dev.js";
import { type Identity, openIdentity } from "../src/identity/identity.js";
import { serverCallInterceptor } from "../src/interceptors.js";
import { reflectionRoutes } from "../src/reflection.js";
import { createMeshServer, type MeshServer } from "../src/serve.js";
import { callError } from "../src/testing/errors.js";
import { memoryLogger } from "../src/testing/logger.js";

type ReflectionQuery = MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"];

const GET_TASK = "/hookmesh.tasks.v1.TaskService/GetTask";
const SUBMIT_EVENT = "/hookmesh.tasks.v1.TaskService/SubmitEvent";

const operator = createOperatorToken("operator");
const dashboard = createOperatorToken("dashboard");
const tokens = OperatorTokens.parse([operator.line, dashboard.line].join("\n"));

/** A method declared without the access option, which no identity may call. */
const unguardedPing = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "test/unguarded.proto",
    package: "test.v1",
    syntax: "proto3",
    dependency: ["google/protobuf/empty.proto"],
    service: [
      {
        name: "Unguarded",
        method: [{ name: "Ping", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" }],
      },
    ],
  }),
  (name) => (name === file_google_protobuf_empty.proto.name ? file_google_protobuf_empty : undefined),
).getService("test.v1.Unguarded")!.methods[0] as DescMethodUnary;

/**
 * GetTask answers with the caller the handler sees, as `name/via`; SubmitEvent is the gateway's
 * only; Unguarded.Ping declares no policy.
 */
function serviceRoutes(router: ConnectRouter) {
  router.service(TaskService, {
    getTask(_, context) {
      const peer = context.values.get(peerKey);
      return { task: { id: `${peer?.name}/${peer?.via}` } };
    },
    submitEvent: () => ({}),
  });
  router.rpc(unguardedPing, () => ({}));
}

/** The services with health and reflection beside them, as createMeshServer registers them. */
function routes(router: ConnectRouter) {
  serviceRoutes(router);
  router.service(Health, { check: () => ({ status: ServingStatus.SERVING }) });
  reflectionRoutes([file_hookmesh_tasks_v1_task_service])(router);
}

/**
 * In memory, wired as the server wires it: the peer proved by a client certificate (set by an
 * outer interceptor here, since the router transport carries no context values), then the call
 * log, then authorization.
 */
function inMemory(certificate?: string) {
  const { logger, lines } = memoryLogger("authorize-test");
  const asPeer: Interceptor = (next) => (req) => {
    if (certificate) {
      req.contextValues.set(peerKey, {
        id: `spiffe://hookmesh.test/${certificate}`,
        name: certificate,
        via: "mtls",
      } satisfies Peer);
    }
    return next(req);
  };
  const transport = createRouterTransport(routes, {
    router: { interceptors: [asPeer, serverCallInterceptor(logger), authorizationInterceptor({ logger, tokens })] },
  });
  const logged = () => lines().map((line) => JSON.parse(line) as Record<string, unknown>);
  return { tasks: createClient(TaskService, transport), transport, logged };
}

/**
 * Reflection sends a file with its imports, in no particular order; a descriptor set lists
 * every file after the files it imports.
 */
function inImportOrder(files: readonly FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((file) => [file.name, file]));
  const ordered = new Set<FileDescriptorProto>();
  const visit = (file: FileDescriptorProto) => {
    if (ordered.has(file)) return;
    for (const name of file.dependency) visit(byName.get(name)!);
    ordered.add(file);
  };
  files.forEach(visit);
  return [...ordered];
}

/** Sends one reflection request and returns the first answer. */
async function reflect(transport: Transport, messageRequest: ReflectionQuery, options?: CallOptions) {
  const answers = createClient(ServerReflection, transport).serverReflectionInfo(
    createAsyncIterable([{ messageRequest }]),
    options,
  );
  for await (const answer of answers) return answer.messageResponse;
  throw new Error("reflection sent no answer");
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe("authorizationInterceptor", () => {
  it("leaves health open to callers without credentials", async () => {
    const { transport } = inMemory();
    expect(await createClient(Health, transport).check({})).toMatchObject({ status: ServingStatus.SERVING });
  });

  it("refuses a call without credentials as Unauthenticated", async () => {
    const { tasks, logged } = inMemory();
    const err = await callError(tasks.getTask({ id: "t1" }));
    expect([err.code, err.rawMessage]).toEqual([
      Code.Unauthenticated,
      "no credentials: present a client certificate or an Authorization: Bearer token",
    ]);
    expect(logged()).toEqual([expect.objectContaining({ procedure: GET_TASK, code: "Unauthenticated" })]);
  });

  it("lets an identity the option names through, and the call log names it", async () => {
    const { tasks, logged } = inMemory("operator");
    expect((await tasks.getTask({ id: "t1" })).task?.id).toBe("operator/mtls");
    expect(logged()).toEqual([expect.objectContaining({ procedure: GET_TASK, code: "OK", identity: "operator" })]);
  });

  it("refuses an identity the option does not name as PermissionDenied, logged with identity and method", async () => {
    const { tasks, logged } = inMemory("dashboard");
    const err = await callError(tasks.submitEvent({}));
    expect([err.code, err.rawMessage]).toEqual([
      Code.PermissionDenied,
      `identity "dashboard" may not call ${SUBMIT_EVENT}`,
    ]);
    expect(logged()).toEqual([
      expect.objectContaining({
        level: 40,
        msg: "permission denied",
        procedure: SUBMIT_EVENT,
        identity: "dashboard",
        peer: "spiffe://hookmesh.test/dashboard",
        via: "mtls",
      }),
      expect.objectContaining({ procedure: SUBMIT_EVENT, code: "PermissionDenied", identity: "dashboard" }),
    ]);
  });

  it("denies every identity a method declared without the option, and logs it as an error", async () => {
    const { transport, logged } = inMemory("operator");
    const err = await callError(transport.unary(unguardedPing, undefined, undefined, undefined, {}));
    expect([err.code, err.rawMessage]).toEqual([
      Code.PermissionDenied,
      "/test.v1.Unguarded/Ping declares no access policy",
    ]);
    expect(logged()[0]).toMatchObject({ level: 50, procedure: "/test.v1.Unguarded/Ping", identity: "operator" });
  });

  it("opens reflection to any verified identity, and only to one", async () => {
    const listServices = { case: "listServices", value: "" } as const;
    expect((await reflect(inMemory("someone-new").transport, listServices)).case).toBe("listServicesResponse");
    expect((await callError(reflect(inMemory().transport, listServices))).code).toBe(Code.Unauthenticated);
  });

  it("takes a bearer token's identity when there is no certificate, and hands it to the handler", async () => {
    const { tasks, logged } = inMemory();
    expect((await tasks.getTask({ id: "t1" }, bearer(dashboard.token))).task?.id).toBe("dashboard/token");
    expect(logged()).toEqual([expect.objectContaining({ code: "OK", identity: "dashboard" })]);
  });

  it("refuses a wrong, malformed or unconfigured bearer token as Unauthenticated", async () => {
    const { tasks } = inMemory();
    const refused = [
      `Bearer ${createOperatorToken("operator").token}`,
      `Basic ${operator.token}`,
      "Bearer",
      `Bearer ${operator.line}`,
    ];
    for (const authorization of refused) {
      const err = await callError(tasks.getTask({ id: "t1" }, { headers: { authorization } }));
      expect([authorization, err.code, err.rawMessage]).toEqual([
        authorization,
        Code.Unauthenticated,
        "invalid bearer token",
      ]);
    }
    const withoutTokens = createClient(
      TaskService,
      createRouterTransport(routes, {
        router: { interceptors: [authorizationInterceptor({ logger: memoryLogger().logger })] },
      }),
    );
    expect((await callError(withoutTokens.getTask({ id: "t1" }, bearer(operator.token)))).code).toBe(
      Code.Unauthenticated,
    );
  });

  it("prefers the certificate's identity to a bearer token", async () => {
    const { tasks } = inMemory("agent");
    const err = await callError(tasks.getTask({ id: "t1" }, bearer(operator.token)));
    expect([err.code, err.rawMessage]).toEqual([Code.PermissionDenied, `identity "agent" may not call ${GET_TASK}`]);
  });
});

describe("createMeshServer with an identity and bearer tokens", () => {
  const { logger, lines } = memoryLogger("authorize-server-test");
  let home: string;
  let identity: Identity;
  let server: MeshServer;
  let url: string;
  /** The server's CA: these clients check the server, and present no certificate of their own. */
  let nodeOptions: { ca: string };

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "hookmesh-authorize-"));
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks"] });
    identity = openIdentity(envIdentity({ HOOKMESH_HOME: home }, "tasks"), logger)!;
    nodeOptions = { ca: identity.current().ca };
    server = createMeshServer({
      routes: (router) =>
        router.service(TaskService, {
          getTask: (_, context) => ({ task: { id: context.values.get(peerKey)?.name ?? "" } }),
          submitEvent: () => ({}),
        }),
      health: new HealthState([TaskService.typeName], ServingStatus.SERVING),
      logger,
      identity,
      tokens,
    });
    const { port } = await server.listen(0, "127.0.0.1");
    url = `https://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await server.close(0);
    identity.close();
    rmSync(home, { recursive: true, force: true });
  });

  const overHttp1 = () =>
    createClient(TaskService, createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions }));

  it("lets a token's identity call what its option allows, over Connect on HTTP/1.1", async () => {
    expect((await overHttp1().getTask({ id: "t1" }, bearer(dashboard.token))).task?.id).toBe("dashboard");
    expect((await callError(overHttp1().submitEvent({}, bearer(dashboard.token)))).code).toBe(Code.PermissionDenied);
    expect((await callError(overHttp1().getTask({ id: "t1" }, bearer("not-a-token")))).code).toBe(Code.Unauthenticated);
    expect((await callError(overHttp1().getTask({ id: "t1" }))).code).toBe(Code.Unauthenticated);
  });

  it("answers health probes without credentials, over gRPC", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: url, nodeOptions }));
    expect(await health.check({ service: TaskService.typeName })).toMatchObject({ status: ServingStatus.SERVING });
  });

  it("serves the policy through reflection, to an authenticated client in any language", async () => {
    const transport = createGrpcTransport({ baseUrl: url, nodeOptions });
    const taskServiceFile = { case: "fileContainingSymbol", value: TaskService.typeName } as const;
    expect((await callError(reflect(transport, taskServiceFile))).code).toBe(Code.Unauthenticated);
    const answer = await reflect(transport, taskServiceFile, bearer(operator.token));
    if (answer.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${answer.case}`);
    // A client that knows only the descriptors it was sent, not this repository's generated code.
    const files = answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: inImportOrder(files) }));
    const policy = Object.fromEntries(
      registry
        .getService(TaskService.typeName)!
        .methods.map((method) => [method.name, getOption(method, access).identities]),
    );
    expect(policy).toMatchObject({
      SubmitEvent: ["gateway"],
      GetTask: ["operator", "dashboard"],
      CancelTask: ["operator", "dashboard"],
    });
  });

  it("never logs a token, and logs who was refused", () => {
    const log = lines().join("\n");
    expect(log).not.toContain(dashboard.token);
    expect(log).not.toContain(operator.token);
    expect(log).not.toContain("not-a-token");
    expect(lines().map((line) => JSON.parse(line) as Record<string, unknown>)).toContainEqual(
      expect.objectContaining({
        msg: "permission denied",
        identity: "dashboard",
        procedure: SUBMIT_EVENT,
        via: "token",
      }),
    );
  });
});

describe("createMeshServer without an identity (HOOKMESH_INSECURE=1)", () => {
  it("authorizes nothing: every method is reachable without credentials, and listen says so", async () => {
    const { logger, lines } = memoryLogger("insecure-test");
    const server = createMeshServer({
      routes: serviceRoutes,
      health: new HealthState([], ServingStatus.SERVING),
      logger,
      tokens,
    });
    const { port } = await server.listen(0, "127.0.0.1");
    try {
      const warning = lines()
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.level === 40);
      expect(warning).toMatchObject({ port, msg: expect.stringMatching(/^INSECURE: .*no authorization/) });

      const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" });
      const tasks = createClient(TaskService, transport);
      // No certificates, so no peer; and a bearer token is not looked at, since nothing authorizes.
      expect((await tasks.getTask({ id: "t1" })).task?.id).toBe("undefined/undefined");
      expect((await tasks.getTask({ id: "t1" }, bearer(operator.token))).task?.id).toBe("undefined/undefined");
      await expect(tasks.submitEvent({})).resolves.toBeDefined();
      // Even a method without an access option, which default deny refuses to everyone under mTLS.
      expect(await transport.unary(unguardedPing, undefined, undefined, undefined, {})).toMatchObject({ message: {} });
      const listServices = { case: "listServices", value: "" } as const;
      expect((await reflect(createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }), listServices)).case).toBe(
        "listServicesResponse",
      );
    } finally {
      await server.close(0);
    }
  });
});
