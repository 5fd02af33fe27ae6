import {
  type DescMethod,
  type DescMethodBiDiStreaming,
  type DescMethodClientStreaming,
  type DescMethodServerStreaming,
  type DescMethodStreaming,
  type DescMethodUnary,
  getOption,
  hasOption,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createRouterTransport,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import { access } from "../../gen/hookmesh/auth/v1/auth_pb.js";
import { authorizationInterceptor } from "../src/auth/authorize.js";
import { peerKey } from "../src/auth/peer.js";
import { hookmeshServices } from "../src/testing/contracts.js";
import { callError } from "../src/testing/errors.js";
import { memoryLogger } from "../src/testing/logger.js";

const services = await hookmeshServices();
const methods = services.flatMap((service) => service.methods);
const identitiesOf = (method: DescMethod) => getOption(method, access).identities;
/** Every identity some method names, and one that none does. */
const identities = [...new Set(methods.flatMap(identitiesOf)), "intruder"].toSorted();

describe("the access policy in the contracts", () => {
  it("is read from every hookmesh service", () => {
    expect(services.map((service) => service.typeName)).toEqual(
      expect.arrayContaining([
        "hookmesh.tasks.v1.TaskService",
        "hookmesh.tasks.v1.WorkerService",
        "hookmesh.github.v1.GitHubService",
      ]),
    );
  });

  it.each(methods.map((method) => [`${method.parent.typeName}.${method.name}`, method] as const))(
    "%s names who may call it",
    (_, method) => {
      expect(hasOption(method, access), "add option (hookmesh.auth.v1.access) to this rpc").toBe(true);
      expect(identitiesOf(method).length).toBeGreaterThan(0);
      for (const identity of identitiesOf(method)) expect(identity).toMatch(/^[a-z][a-z0-9-]*$/);
    },
  );

  it("gives each identity what the issue asks for", () => {
    const policy = Object.fromEntries(
      methods.map((m) => [`${m.parent.name}.${m.name}`, identitiesOf(m).toSorted().join(",")]),
    );
    expect(policy).toMatchObject({
      "TaskService.SubmitEvent": "gateway",
      "TaskService.SubmitEvents": "gateway",
      "TaskService.GetTask": "dashboard,operator",
      "TaskService.WatchTask": "dashboard,operator",
      "TaskService.CancelTask": "dashboard,operator",
      "TaskService.RetryTask": "dashboard,operator",
      "TaskService.WatchChanges": "dashboard",
      "WorkerService.LeaseTasks": "agent",
      "RouteService.UpsertRoute": "dashboard,operator",
      "CustomRouteService.UpsertCustomRoute": "operator",
      "DeliveryService.Redeliver": "dashboard,operator",
      "AgentService.Drain": "dashboard,operator",
      "DashboardService.RetryTask": "operator",
      "GitHubService.CreateComment": "agent",
      "GitHubService.GetIssue": "agent,operator",
      "GitHubService.CreateCloneToken": "agent",
    });
  });
});

const REACHED = "handler reached";

/** A handler for `method` that fails with a marker: reaching it means authorization let the call through. */
function registerMarker(router: ConnectRouter, method: DescMethod): void {
  const reached = () => new ConnectError(REACHED, Code.Unimplemented);
  switch (method.methodKind) {
    case "unary":
      router.rpc(method as DescMethodUnary, async () => {
        throw reached();
      });
      return;
    case "client_streaming":
      router.rpc(method as DescMethodClientStreaming, async () => {
        throw reached();
      });
      return;
    case "server_streaming":
      // biome-ignore lint/correctness/useYield: a streaming handler that refuses before its first message
      router.rpc(method as DescMethodServerStreaming, async function* () {
        throw reached();
      });
      return;
    case "bidi_streaming":
      // biome-ignore lint/correctness/useYield: a streaming handler that refuses before its first message
      router.rpc(method as DescMethodBiDiStreaming, async function* () {
        throw reached();
      });
      return;
  }
}

/**
 * An in-memory server for every hookmesh service. The router transport does not carry context
 * values from the client to the server, so an outer interceptor sets `peerKey` the way the
 * real server does from a verified client certificate.
 */
function transportAs(identity: string | undefined): Transport {
  const asPeer: Interceptor = (next) => (req) => {
    if (identity !== undefined)
      req.contextValues.set(peerKey, { id: `spiffe://hookmesh.test/${identity}`, name: identity, via: "mtls" });
    return next(req);
  };
  return createRouterTransport(
    (router) => {
      for (const method of methods) registerMarker(router, method);
    },
    { router: { interceptors: [asPeer, authorizationInterceptor({ logger: memoryLogger().logger })] } },
  );
}

/** Calls `method` with an empty request, reading any response stream to its end. */
async function invoke(transport: Transport, method: DescMethod): Promise<void> {
  if (method.methodKind === "unary") {
    await transport.unary(method as DescMethodUnary, undefined, undefined, undefined, {});
    return;
  }
  const response = await transport.stream(
    method as DescMethodStreaming,
    undefined,
    undefined,
    undefined,
    createAsyncIterable([{}]),
  );
  for await (const _ of response.message);
}

const anonymous = transportAs(undefined);
const asIdentity = new Map(identities.map((identity) => [identity, transportAs(identity)]));

describe("the authorization matrix, from the descriptors", () => {
  it.each(methods.map((method) => [`${method.parent.typeName}.${method.name}`, method] as const))(
    "%s",
    async (_, method) => {
      expect((await callError(invoke(anonymous, method))).code).toBe(Code.Unauthenticated);
      const allowed = identitiesOf(method);
      for (const [identity, transport] of asIdentity) {
        const err = await callError(invoke(transport, method));
        if (allowed.includes(identity)) expect([identity, err.rawMessage]).toEqual([identity, REACHED]);
        else expect([identity, Code[err.code]]).toEqual([identity, Code[Code.PermissionDenied]]);
      }
    },
  );
});
