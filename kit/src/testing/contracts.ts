import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import type { DescFile, DescService } from "@bufbuild/protobuf";

/**
 * Every service generated from proto/hookmesh, found by walking gen/hookmesh: what a test built
 * on it covers grows with the contracts, with no list to keep up to date.
 */
export async function hookmeshServices(): Promise<DescService[]> {
  const root = fileURLToPath(new URL("../../../gen/hookmesh/", import.meta.url));
  const modules = readdirSync(root, { recursive: true, encoding: "utf8" })
    .filter((path) => path.endsWith("_pb.ts"))
    .toSorted();
  const files: DescFile[] = [];
  for (const path of modules) {
    const generated = (await import(pathToFileURL(join(root, path)).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(generated)) if (name.startsWith("file_")) files.push(value as DescFile);
  }
  return files.flatMap((file) => file.services);
}

/**
 * The first Python that has grpcio, the independent (C-core) client of the interop tests:
 * Debian's python3-grpcio lives beside the system python3, which another python3 on PATH may
 * hide. Undefined when there is none (`.ci/run` installs it).
 */
export async function pythonWithGrpc(): Promise<string | undefined> {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    try {
      await promisify(execFile)(candidate, ["-c", "import grpc"]);
      return candidate;
    } catch {
      // not installed, or without grpcio: try the next one
    }
  }
  return undefined;
}
