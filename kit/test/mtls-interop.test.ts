import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { envIdentity } from "../src/config.js";
import { HealthState } from "../src/health.js";
import { devIdentityFiles, ensureDevIdentities } from "../src/identity/dev.js";
import { type Identity, openIdentity } from "../src/identity/identity.js";
import { createMeshServer, type MeshServer } from "../src/serve.js";
import { pythonWithGrpc } from "../src/testing/contracts.js";
import { memoryLogger } from "../src/testing/logger.js";

const run = promisify(execFile);
const buf = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));

const python = await pythonWithGrpc();

/** A unary Health.Check with Python's grpcio under mTLS; prints the response bytes in hex. */
const PYTHON_CHECK = `
import sys, grpc
ca, key, cert = (open(path, "rb").read() for path in sys.argv[1:4])
credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
with grpc.secure_channel(sys.argv[4], credentials) as channel:
    print(channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10).hex())
`;

let home: string;
let identity: Identity;
let server: MeshServer;
/** `localhost:<port>`: standard clients check the host name, which development certificates carry. */
let target: string;
let operator: { ca: string; cert: string; key: string };

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "hookmesh-interop-"));
  await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks", "operator"] });
  identity = openIdentity(envIdentity({ HOOKMESH_HOME: home }, "tasks"), memoryLogger().logger)!;
  server = createMeshServer({
    routes: () => {},
    health: new HealthState([TaskService.typeName], ServingStatus.SERVING),
    logger: memoryLogger().logger,
    identity,
  });
  const { port } = await server.listen(0, "127.0.0.1");
  target = `localhost:${port}`;
  const files = devIdentityFiles(home, "operator");
  operator = { ca: files.caFile, cert: files.certFile, key: files.keyFile };
});

afterAll(async () => {
  await server.close(100);
  identity.close();
  rmSync(home, { recursive: true, force: true });
});

describe("standard gRPC clients under mTLS with development identities", () => {
  it("@grpc/grpc-js checks health with createSsl(ca, key, cert)", async () => {
    const definition = protoLoader.loadSync(healthProtoPath, { enums: String, defaults: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const read = (path: string) => readFileSync(path);
    const stub = new loaded.grpc.health.v1.Health(
      target,
      grpc.credentials.createSsl(read(operator.ca), read(operator.key), read(operator.cert)),
    ) as grpc.Client & Record<string, Function>;
    try {
      const res = await new Promise((resolve, reject) =>
        stub.Check!({ service: "" }, (err: grpc.ServiceError | null, out: unknown) =>
          err ? reject(err) : resolve(out),
        ),
      );
      expect(res).toEqual({ status: "SERVING" });
    } finally {
      stub.close();
    }
  });

  it.skipIf(python === undefined)(
    "Python grpcio checks health with ssl_channel_credentials (skipped without python3-grpcio: apt-get install python3-grpcio)",
    async () => {
      const { stdout } = await run(python!, ["-c", PYTHON_CHECK, operator.ca, operator.key, operator.cert, target]);
      // HealthCheckResponse{status: SERVING}: field 1, varint 1.
      expect(stdout.trim()).toBe("0801");
    },
  );

  it("buf curl lists services through reflection and calls Health.Check", async () => {
    const curl = async (...args: string[]) =>
      (
        await run(buf, [
          "curl",
          "--protocol",
          "grpc",
          "--cacert",
          operator.ca,
          "--cert",
          operator.cert,
          "--key",
          operator.key,
          ...args,
        ])
      ).stdout;
    const services = (await curl("--list-services", `https://${target}`)).trim().split("\n");
    expect(services).toEqual(expect.arrayContaining(["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]));
    expect(JSON.parse(await curl(`https://${target}/grpc.health.v1.Health/Check`))).toEqual({ status: "SERVING" });
  });
});
