import { execFile } from "node:child_process";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createFileRegistry, type DescFile, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  file_google_protobuf_cpp_features,
  file_google_protobuf_java_features,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, createClient, createRouterTransport } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflection,
  type ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { TaskState } from "../../gen/hookmesh/tasks/v1/task_pb.js";
import { file_hookmesh_tasks_v1_task_service, TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { reflectionRoutes } from "../src/reflection.js";

type Request = MessageInitShape<typeof ServerReflectionRequestSchema>;
type Query = Request["messageRequest"];

// The features files extend google.protobuf.FeatureSet (task_service.proto also brings
// hookmesh.auth.v1.access, an extension of google.protobuf.MethodOptions).
const served = [
  file_hookmesh_tasks_v1_task_service,
  file_google_protobuf_cpp_features,
  file_google_protobuf_java_features,
];

/** Sends all requests on one stream, as reflection clients do. */
function reflect(...requests: Request[]): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflection, createRouterTransport(reflectionRoutes(served)));
  return collect(client.serverReflectionInfo(stream(requests)));
}

async function* stream<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

// Array.fromAsync needs Node 22.
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

async function ask(messageRequest: Query): Promise<ServerReflectionResponse["messageResponse"]> {
  const [response] = await reflect({ messageRequest });
  return response!.messageResponse;
}

async function askFiles(messageRequest: Query): Promise<string[]> {
  const response = await ask(messageRequest);
  if (response.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${response.case}`);
  return response.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

/** task_service.proto and every file it imports, directly or not, by name. */
const TASK_SERVICE_CLOSURE = (() => {
  const names = new Set<string>();
  const visit = (file: DescFile) => {
    if (names.has(file.proto.name)) return;
    names.add(file.proto.name);
    file.dependencies.forEach(visit);
  };
  visit(file_hookmesh_tasks_v1_task_service);
  return [...names].toSorted();
})();

describe("reflectionRoutes", () => {
  it("lists the given services and reflection", async () => {
    const response = await ask({ case: "listServices", value: "" });
    expect(response.case === "listServicesResponse" && response.value.service.map((s) => s.name)).toEqual([
      "hookmesh.tasks.v1.TaskService",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  it("returns a file by name with its transitive imports, each once", async () => {
    const names = await askFiles({ case: "fileByFilename", value: "hookmesh/tasks/v1/task_service.proto" });
    expect(names[0]).toBe("hookmesh/tasks/v1/task_service.proto");
    expect(names.toSorted()).toEqual(TASK_SERVICE_CLOSURE);
  });

  it("returns descriptors a client can build the schema from", async () => {
    const response = await ask({ case: "fileContainingSymbol", value: "hookmesh.tasks.v1.TaskService" });
    if (response.case !== "fileDescriptorResponse") throw new Error(response.case);
    const [requested, ...imports] = response.value.fileDescriptorProto.map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    // Resolves imports to DescFiles one by one: given protos, createFileRegistry adds them in an
    // order that breaks on diamond imports (task_service -> task -> event, task_service -> event).
    const resolve = (name: string): DescFile | undefined => {
      const proto = imports.find((file) => file.name === name);
      return proto && createFileRegistry(proto, resolve).getFile(name);
    };
    const registry = createFileRegistry(requested!, resolve);
    const service = registry.getService("hookmesh.tasks.v1.TaskService");
    expect(service?.methods.map((m) => m.name)).toEqual(TaskService.methods.map((m) => m.name));
    const createTime = registry.getMessage("hookmesh.tasks.v1.Task")?.field.createTime;
    expect(createTime?.message?.typeName).toBe("google.protobuf.Timestamp");
  });

  it.each([
    ["hookmesh.tasks.v1.TaskService", "hookmesh/tasks/v1/task_service.proto"],
    ["hookmesh.tasks.v1.TaskService.GetTask", "hookmesh/tasks/v1/task_service.proto"],
    ["hookmesh.tasks.v1.Task", "hookmesh/tasks/v1/task.proto"],
    ["hookmesh.tasks.v1.Task.create_time", "hookmesh/tasks/v1/task.proto"],
    ["hookmesh.tasks.v1.TaskState", "hookmesh/tasks/v1/task.proto"],
    ["hookmesh.tasks.v1.TASK_STATE_QUEUED", "hookmesh/tasks/v1/task.proto"],
    ["hookmesh.events.v1.Subject.ref", "hookmesh/events/v1/event.proto"],
    ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
    ["google.protobuf.DescriptorProto.ExtensionRange", "google/protobuf/descriptor.proto"],
    ["pb.cpp", "google/protobuf/cpp_features.proto"],
    ["grpc.health.v1.Health.Check", "health/v1/health.proto"],
    ["grpc.health.v1.HealthCheckResponse.ServingStatus", "health/v1/health.proto"],
    ["grpc.health.v1.HealthCheckResponse.SERVING", "health/v1/health.proto"],
    ["grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto"],
  ])("finds the file containing %s", async (symbol, file) => {
    const names = await askFiles({ case: "fileContainingSymbol", value: symbol });
    expect(names[0]).toBe(file);
  });

  it("returns the file containing an extension", async () => {
    const value = { containingType: "google.protobuf.FeatureSet", extensionNumber: 1001 };
    const names = await askFiles({ case: "fileContainingExtension", value });
    expect(names).toEqual(["google/protobuf/java_features.proto", "google/protobuf/descriptor.proto"]);
  });

  it("lists the extension numbers of a type", async () => {
    const featureSet = await ask({ case: "allExtensionNumbersOfType", value: "google.protobuf.FeatureSet" });
    expect(featureSet.case === "allExtensionNumbersResponse" && featureSet.value).toMatchObject({
      baseTypeName: "google.protobuf.FeatureSet",
      extensionNumber: [1000, 1001],
    });
    const task = await ask({ case: "allExtensionNumbersOfType", value: "hookmesh.tasks.v1.Task" });
    expect(task.case === "allExtensionNumbersResponse" && task.value.extensionNumber).toEqual([]);
  });

  it.each<[string, Query]>([
    ["file", { case: "fileByFilename", value: "nope.proto" }],
    ["symbol", { case: "fileContainingSymbol", value: "hookmesh.tasks.v1.Nope" }],
    [
      "extension",
      { case: "fileContainingExtension", value: { containingType: "google.protobuf.FeatureSet", extensionNumber: 9 } },
    ],
    ["extendee", { case: "allExtensionNumbersOfType", value: "hookmesh.tasks.v1.Nope" }],
  ])("answers an unknown %s with NOT_FOUND", async (_, query) => {
    const response = await ask(query);
    expect(response.case === "errorResponse" && response.value.errorCode).toBe(Code.NotFound);
  });

  it("echoes host and request, and keeps the stream open after an error", async () => {
    const unknown = { host: "tasks.internal", messageRequest: { case: "fileContainingSymbol", value: "a.B" } } as const;
    const known = { messageRequest: { case: "fileContainingSymbol", value: "hookmesh.tasks.v1.Task" } } as const;
    const [error, found] = await reflect(unknown, known);
    expect(error).toMatchObject({
      validHost: "tasks.internal",
      originalRequest: unknown,
      messageResponse: {
        case: "errorResponse",
        value: { errorCode: Code.NotFound, errorMessage: "symbol a.B not found" },
      },
    });
    expect(found).toMatchObject({ originalRequest: known, messageResponse: { case: "fileDescriptorResponse" } });
  });

  it("serves v1alpha", async () => {
    const client = createClient(v1alpha.ServerReflection, createRouterTransport(reflectionRoutes(served)));
    const requests: MessageInitShape<typeof v1alpha.ServerReflectionRequestSchema>[] = [
      { host: "h", messageRequest: { case: "listServices", value: "" } },
      { messageRequest: { case: "fileContainingSymbol", value: "hookmesh.tasks.v1.TaskService" } },
    ];
    const [services, file] = await collect(client.serverReflectionInfo(stream(requests)));
    expect(services).toMatchObject({
      $typeName: "grpc.reflection.v1alpha.ServerReflectionResponse",
      validHost: "h",
      originalRequest: requests[0],
      messageResponse: { case: "listServicesResponse", value: { service: { length: 3 } } },
    });
    expect(file!.messageResponse.value).toMatchObject({ fileDescriptorProto: { length: TASK_SERVICE_CLOSURE.length } });
  });
});

describe("reflection over the network with buf curl", () => {
  const buf = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
  const unimplemented = () => {
    throw new ConnectError("not needed by this test", Code.Unimplemented);
  };
  const server = http2.createServer(
    connectNodeAdapter({
      routes: (router: ConnectRouter) => {
        router.service(TaskService, {
          getTask: (request) => ({ task: { id: request.id, state: TaskState.QUEUED } }),
          submitEvent: unimplemented,
          listTasks: unimplemented,
        });
        reflectionRoutes([file_hookmesh_tasks_v1_task_service])(router);
      },
    }),
  );
  let url = "";

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))));

  const curl = async (...args: string[]): Promise<string> => {
    const { stdout } = await promisify(execFile)(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      ...args,
    ]);
    return stdout;
  };

  it("lists services", async () => {
    const services = (await curl("--list-services", url)).trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining(["hookmesh.tasks.v1.TaskService", "grpc.reflection.v1.ServerReflection"]),
    );
  });

  it("lists methods through v1alpha", async () => {
    const methods = (await curl("--reflect-protocol", "grpc-v1alpha", "--list-methods", url)).trim().split("\n");
    expect(methods).toContain("hookmesh.tasks.v1.TaskService/GetTask");
  });

  it("calls a method using only the reflected schema", async () => {
    const out = await curl("-d", '{"id": "t1"}', `${url}/hookmesh.tasks.v1.TaskService/GetTask`);
    expect(JSON.parse(out)).toEqual({ task: { id: "t1", state: "TASK_STATE_QUEUED" } });
  });
});
