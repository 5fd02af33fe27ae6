import {
  create,
  createRegistry,
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageShape,
  type Registry,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import {
  ErrorResponseSchema,
  ExtensionNumberResponseSchema,
  FileDescriptorResponseSchema,
  file_grpc_reflection_v1_reflection,
  ListServiceResponseSchema,
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_health_v1_health } from "../../gen/health/v1/health_pb.js";

/**
 * Routes for gRPC server reflection, both grpc.reflection.v1 and the older v1alpha that
 * many clients still call.
 *
 * `files` are the generated files of the served services. Their imports are found
 * through DescFile.dependencies, so well-known types resolve without being listed.
 */
export function reflectionRoutes(files: readonly DescFile[]): (router: ConnectRouter) => void {
  const index = new Index(files);
  return (router) => {
    router.service(ServerReflection, {
      serverReflectionInfo: (requests) => eachOf(requests, (request) => index.respond(request)),
    });
    // The v1alpha messages are wire-identical to v1, so a byte round trip reuses v1.
    router.service(v1alpha.ServerReflection, {
      serverReflectionInfo: (requests) =>
        eachOf(requests, (request) => {
          const response = index.respond(
            transcode(v1alpha.ServerReflectionRequestSchema, ServerReflectionRequestSchema, request),
          );
          return transcode(ServerReflectionResponseSchema, v1alpha.ServerReflectionResponseSchema, response);
        }),
    });
  };
}

async function* eachOf<I, O>(requests: AsyncIterable<I>, respond: (request: I) => O): AsyncIterable<O> {
  for await (const request of requests) yield respond(request);
}

function transcode<F extends DescMessage, T extends DescMessage>(
  from: F,
  to: T,
  message: MessageShape<F>,
): MessageShape<T> {
  return fromBinary(to, toBinary(from, message));
}

class Index {
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, DescFile>();
  private readonly services: string[];
  private readonly registry: Registry;

  constructor(served: readonly DescFile[]) {
    for (const file of withDependencies([
      ...served,
      file_grpc_reflection_v1_reflection,
      v1alpha.file_grpc_reflection_v1alpha_reflection,
      file_health_v1_health,
    ])) {
      this.files.set(file.proto.name, file);
    }
    this.registry = createRegistry(...this.files.values());
    for (const type of this.registry) {
      this.symbols.set(type.typeName, type.file);
      for (const member of memberNames(type)) this.symbols.set(member, type.file);
    }
    const services = [...served.flatMap((file) => file.services), ServerReflection, v1alpha.ServerReflection];
    this.services = [...new Set(services.map((service) => service.typeName))];
  }

  respond(request: ServerReflectionRequest): ServerReflectionResponse {
    return create(ServerReflectionResponseSchema, {
      validHost: request.host,
      originalRequest: request,
      messageResponse: this.answer(request.messageRequest),
    });
  }

  private answer(request: ServerReflectionRequest["messageRequest"]): ServerReflectionResponse["messageResponse"] {
    switch (request.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: create(ListServiceResponseSchema, { service: this.services.map((name) => ({ name })) }),
        };
      case "fileByFilename":
        return fileResponse(this.files.get(request.value), `file ${request.value}`);
      case "fileContainingSymbol":
        return fileResponse(this.symbols.get(request.value), `symbol ${request.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = request.value;
        const extendee = this.registry.getMessage(containingType);
        const extension = extendee && this.registry.getExtensionFor(extendee, extensionNumber);
        return fileResponse(extension?.file, `extension ${extensionNumber} of ${containingType}`);
      }
      case "allExtensionNumbersOfType": {
        if (!this.registry.getMessage(request.value)) {
          return errorResponse(Code.NotFound, `message ${request.value} not found`);
        }
        const extensionNumber = [...this.registry].flatMap((type) =>
          type.kind === "extension" && type.extendee.typeName === request.value ? [type.number] : [],
        );
        return {
          case: "allExtensionNumbersResponse",
          value: create(ExtensionNumberResponseSchema, { baseTypeName: request.value, extensionNumber }),
        };
      }
      case undefined:
        return errorResponse(Code.InvalidArgument, "message_request is not set");
    }
  }
}

/** Symbols inside a type, which the registry does not index but clients may ask for. */
function memberNames(type: DescMessage | DescEnum | DescExtension | DescService): string[] {
  switch (type.kind) {
    case "message":
      return [...type.fields, ...type.oneofs].map((member) => `${type.typeName}.${member.name}`);
    case "service":
      return type.methods.map((method) => `${type.typeName}.${method.name}`);
    case "enum": {
      // Protobuf scopes enum values as siblings of their enum, not as its children.
      const scope = type.typeName.slice(0, type.typeName.lastIndexOf(".") + 1);
      return type.values.map((value) => scope + value.name);
    }
    case "extension":
      return [];
  }
}

/**
 * Sends the file with everything it imports, so that a client can build descriptors
 * without a round trip per import.
 */
function fileResponse(file: DescFile | undefined, what: string): ServerReflectionResponse["messageResponse"] {
  if (!file) return errorResponse(Code.NotFound, `${what} not found`);
  return {
    case: "fileDescriptorResponse",
    value: create(FileDescriptorResponseSchema, {
      fileDescriptorProto: [...withDependencies([file])].map((f) => toBinary(FileDescriptorProtoSchema, f.proto)),
    }),
  };
}

function errorResponse(errorCode: Code, errorMessage: string): ServerReflectionResponse["messageResponse"] {
  return { case: "errorResponse", value: create(ErrorResponseSchema, { errorCode, errorMessage }) };
}

/** The files and their transitive imports, each once; a single file comes first. */
function withDependencies(files: readonly DescFile[]): Set<DescFile> {
  const seen = new Set<DescFile>();
  const visit = (file: DescFile): void => {
    if (seen.has(file)) return;
    seen.add(file);
    file.dependencies.forEach(visit);
  };
  files.forEach(visit);
  return seen;
}
