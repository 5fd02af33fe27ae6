import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type DescMethod, type DescService, getOption } from "@bufbuild/protobuf";
import { type CallOptions, type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { type ClientFactory, createLogger, serverIdentityCheck, spiffeId } from "@hookmesh/kit";
import {
  freePort,
  hookmeshServices,
  MESH_IDENTITIES,
  startService,
  TEST_REDIS_URL,
  type TestIdentities,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import { access } from "../gen/hookmesh/auth/v1/auth_pb.js";

/**
 * The access policy of the contracts, against the real services: every service of the mesh
 * runs under the test identities (mTLS, the defaults), and every method of every hookmesh
 * service in gen/ is called without a certificate, as every mesh identity its `access` option
 * does not name, and as every identity it names. The matrix is generated from the descriptors,
 * so a new method (or service of a served package) is covered without editing this test.
 * kit/test/access-policy.test.ts runs the same matrix against stub handlers; this one proves
 * each service actually installs the interceptor on the port it serves.
 */

const TRUST_DOMAIN = "hookmesh.local";

/**
 * The running service that serves `service`: `hookmesh.<name>.v1.*` is served by the process
 * whose identity is `<name>` (tasks serves TaskService, WorkerService and RouteService).
 */
const serverOf = (service: DescService) => service.typeName.split(".")[1]!;

const services = await hookmeshServices();
const servers = [...new Set(services.map(serverOf))].toSorted();
const hostedBy = (server: string) => services.filter((service) => serverOf(service) === server);
const allowedTo = (method: DescMethod) => getOption(method, access).identities;

/**
 * Calls that change what later calls see, run after every other: the operator's Drain stops
 * the agent's pool and turns its health NOT_SERVING.
 */
const DESTRUCTIVE = new Set(["hookmesh.agent.v1.AgentService.Drain"]);
const nameOf = (method: DescMethod) => `${method.parent.typeName}.${method.name}`;
const methods = services
  .flatMap((service) => service.methods)
  .toSorted((a, b) => Number(DESTRUCTIVE.has(nameOf(a))) - Number(DESTRUCTIVE.has(nameOf(b))));

/**
 * Long enough that a refusal, which the interceptor sends before any handler runs, arrives
 * under load; a handler that holds on to an empty request (a stream waiting for events, a
 * long poll) ends in DeadlineExceeded, which counts as reached.
 */
const CALL_TIMEOUT_MS = 3_000;

/** The outcome of a call, as the matrix compares it: "OK" or the code's name. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

type AnyMethod = (request: unknown, options: CallOptions) => Promise<unknown> | AsyncIterable<unknown>;

/**
 * Calls `method` with an empty request (a stream of one, when it takes a stream), to its
 * answer, or to the first message of a response stream.
 */
async function invoke(client: Client<DescService>, method: DescMethod): Promise<void> {
  const call = (client as unknown as Record<string, AnyMethod>)[method.localName]!;
  const streamsRequests = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
  const response = call(streamsRequests ? createAsyncIterable([{}]) : {}, { timeoutMs: CALL_TIMEOUT_MS });
  if (Symbol.asyncIterator in response) {
    for await (const _ of response) break;
  } else {
    await response;
  }
}

/**
 * What a call reaching the handler looks like here: any outcome but a refusal. Unavailable is
 * not one either: with no upstream called (dry run) it means the call never got an answer from
 * the service, which must not pass for "allowed".
 */
const REFUSALS = new Set(["Unauthenticated", "PermissionDenied", "Unavailable"]);
const REACHED = "reached its handler";
const NO_CERTIFICATE = "(no certificate)";

/**
 * The integration services, run as processes (their packages export no compose function), by
 * the variable that points each at its provider.
 */
const INTEGRATIONS = {
  github: "GITHUB_API_URL",
  slack: "SLACK_API_URL",
  jira: "JIRA_BASE_URL",
  sentry: "SENTRY_API_URL",
};

describe("who may call what, on the running mesh", () => {
  const logger = createLogger({ service: "test", level: "silent" });
  let identities: TestIdentities;
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  const processes: ChildProcess[] = [];
  /** Each server's gRPC URL, by its identity name. */
  const urls = new Map<string, string>();
  /** One client factory per mesh identity: every call presents that identity's certificate. */
  const callers = new Map<string, ClientFactory>();
  /** Per server: TLS that trusts the mesh CA and checks the server's identity, with no client certificate. */
  const anonymous = new Map<string, Transport>();
  const anonymousSessions: Http2SessionManager[] = [];

  const clientAs = <T extends DescService>(caller: string, service: T, server: string): Client<T> =>
    caller === NO_CERTIFICATE
      ? createClient(service, anonymous.get(server)!)
      : callers.get(caller)!.client(service, urls.get(server)!, server);

  /** Starts a service the way its package starts, on a free port, under the test identities. */
  async function startProcess(name: string, env: Record<string, string>): Promise<void> {
    const port = await freePort();
    const prefix = name.toUpperCase();
    processes.push(
      startService(`@hookmesh/${name}`, {
        ...identities.env,
        [`${prefix}_PORT`]: String(port),
        [`${prefix}_HOST`]: "127.0.0.1",
        SHUTDOWN_GRACE_MS: "0",
        LOG_LEVEL: "error",
        ...env,
      }),
    );
    urls.set(name, `https://127.0.0.1:${port}`);
  }

  /** A health check without a certificate: the status's name, or the code it failed with. */
  const health = async (server: string, service = ""): Promise<string> => {
    try {
      return ServingStatus[
        (await clientAs(NO_CERTIFICATE, Health, server).check({ service }, { timeoutMs: 1_000 })).status
      ];
    } catch (err) {
      return Code[ConnectError.from(err).code];
    }
  };

  beforeAll(async () => {
    identities = await testIdentities();
    db = await testRedis("authorization-matrix");
    for (const [name, upstream] of Object.entries(INTEGRATIONS)) {
      await startProcess(name, {
        // No credential is set: whatever the handlers would send upstream is a dry run.
        HOOKMESH_DRY_RUN: "1",
        // A closed port all the same, so that nothing this test sends can leave the machine.
        [upstream]: "http://127.0.0.1:9",
        REDIS_URL: TEST_REDIS_URL,
        [`${name.toUpperCase()}_REDIS_PREFIX`]: `${db.prefix}${name}:`,
      });
    }
    tasks = await startTasks(db, logger, { env: identities.env });
    urls.set("tasks", tasks.url);
    gateway = await startGateway(db, tasks.url, logger, identities.env);
    urls.set("gateway", gateway.grpcUrl);
    await startProcess("agent", {
      TASKS_URL: tasks.url,
      ...Object.fromEntries(Object.keys(INTEGRATIONS).map((name) => [`${name.toUpperCase()}_URL`, urls.get(name)!])),
      AGENT_RUNNER: "command",
      AGENT_COMMAND: "true",
      AGENT_CONCURRENCY: "1",
    });
    // Its read model in PGlite under the identities' home: the only dashboard of this process.
    await startProcess("dashboard", {
      TASKS_URL: tasks.url,
      GATEWAY_URL: gateway.grpcUrl,
      AGENT_URL: urls.get("agent")!,
      ...Object.fromEntries(Object.keys(INTEGRATIONS).map((name) => [`${name.toUpperCase()}_URL`, urls.get(name)!])),
      DASHBOARD_HTTP_PORT: String(await freePort()),
    });
    const ca = readFileSync(join(identities.home, "tls", "ca.crt"));
    for (const server of servers) {
      const baseUrl = urls.get(server)!;
      const checkServerIdentity = serverIdentityCheck(spiffeId(TRUST_DOMAIN, server));
      const sessionManager = new Http2SessionManager(baseUrl, undefined, { ca, checkServerIdentity });
      anonymousSessions.push(sessionManager);
      anonymous.set(server, createGrpcTransport({ baseUrl, sessionManager }));
    }
    // One attempt: a refusal is the answer, not something to retry.
    const oneAttempt = { retry: { maxAttempts: 1 } };
    for (const identity of MESH_IDENTITIES) callers.set(identity, identities.clients(identity, oneAttempt));
    await Promise.all(
      servers.map((server) =>
        vi.waitFor(
          async () => {
            if ((await health(server)) !== "SERVING") throw new Error(`${server} is not serving yet`);
          },
          // The dashboard's embedded PostgreSQL makes its files first: seconds on a busy machine.
          { timeout: 55_000, interval: 100 },
        ),
      ),
    );
  }, 60_000);

  afterAll(async () => {
    for (const factory of callers.values()) factory.close();
    for (const sessions of anonymousSessions) sessions.abort();
    await Promise.all(
      processes.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        await once(child, "exit");
      }),
    );
    await gateway?.close();
    await tasks?.close();
    await db?.cleanup();
  });

  it("runs a server for every hookmesh service, and has a certificate for every identity the contracts name", () => {
    expect(servers).toEqual(["agent", "dashboard", "gateway", "github", "jira", "sentry", "slack", "tasks"]);
    expect(MESH_IDENTITIES).toEqual(expect.arrayContaining([...new Set(methods.flatMap(allowedTo))]));
  });

  it.each(servers)(
    "%s answers health checks without a certificate, for itself and each service it hosts",
    async (server) => {
      const names = ["", ...hostedBy(server).map((service) => service.typeName)];
      const statuses = await Promise.all(names.map((service) => health(server, service)));
      expect(Object.fromEntries(names.map((name, i) => [name, statuses[i]]))).toEqual(
        Object.fromEntries(names.map((name) => [name, "SERVING"])),
      );
    },
  );

  it.each(servers)(
    "%s lists its services by reflection to every identity, and to no caller without a certificate",
    async (server) => {
      const listed = async (caller: string) => {
        const names: string[] = [];
        const responses = clientAs(caller, ServerReflection, server).serverReflectionInfo(
          createAsyncIterable([{ messageRequest: { case: "listServices" as const, value: "" } }]),
          { timeoutMs: CALL_TIMEOUT_MS },
        );
        for await (const response of responses) {
          if (response.messageResponse.case === "listServicesResponse")
            names.push(...response.messageResponse.value.service.map((s) => s.name));
        }
        return names;
      };
      const hosted = hostedBy(server).map((service) => service.typeName);
      for (const names of await Promise.all(MESH_IDENTITIES.map(listed)))
        expect(names).toEqual(expect.arrayContaining(hosted));
      expect(await outcome(listed(NO_CERTIFICATE))).toBe("Unauthenticated");
    },
  );

  it.each(methods.map((method) => [nameOf(method), method] as const))("%s", async (_, method) => {
    const server = serverOf(method.parent);
    const allowed = allowedTo(method);
    const callersOf = [NO_CERTIFICATE, ...MESH_IDENTITIES];
    const outcomes = await Promise.all(
      callersOf.map((caller) => outcome(invoke(clientAs(caller, method.parent, server), method))),
    );
    const actual = Object.fromEntries(
      callersOf.map((caller, i) => [
        caller,
        allowed.includes(caller) && !REFUSALS.has(outcomes[i]!) ? REACHED : outcomes[i]!,
      ]),
    );
    const expected = Object.fromEntries(
      callersOf.map((caller) => [
        caller,
        caller === NO_CERTIFICATE ? "Unauthenticated" : allowed.includes(caller) ? REACHED : "PermissionDenied",
      ]),
    );
    expect(actual).toEqual(expected);
  });
});
