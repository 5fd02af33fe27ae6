import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ClientFactory, type ClientFactoryOptions, createClientFactory } from "../client/index.js";
import { type Env, envIdentity } from "../config.js";
import { ensureDevIdentities } from "../identity/dev.js";
import { type Identity, openIdentity } from "../identity/identity.js";
import type { Logger } from "../logger.js";
import { memoryLogger } from "./logger.js";

/** Every identity the mesh's contracts name, and the operator. */
export const MESH_IDENTITIES = [
  "gateway",
  "tasks",
  "agent",
  "github",
  "slack",
  "jira",
  "sentry",
  "dashboard",
  "operator",
] as const;

/** A development CA and one certificate per mesh identity in a temporary HOOKMESH_HOME. */
export interface TestIdentities {
  home: string;
  /** What a service's `loadConfig` needs to run under these identities (mTLS, the defaults). */
  env: Env;
  /** An opened identity, e.g. to give a test's client factory. */
  identity(name: string): Identity;
  /** A client factory that calls as `name`, closed with the process. */
  clients(
    name: string,
    options?: Omit<ClientFactoryOptions, "identity" | "logger"> & { logger?: Logger },
  ): ClientFactory;
}

let made: Promise<TestIdentities> | undefined;

/**
 * The test process's identities, made once (key generation is cheap, loading the X.509 library
 * is not) and removed when the process exits.
 */
export function testIdentities(): Promise<TestIdentities> {
  made ??= make();
  return made;
}

async function make(): Promise<TestIdentities> {
  const home = mkdtempSync(join(tmpdir(), "hookmesh-identities-"));
  process.once("exit", () => rmSync(home, { recursive: true, force: true }));
  await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: MESH_IDENTITIES });
  const env: Env = { HOOKMESH_HOME: home, HOOKMESH_INSECURE: "0" };
  const opened = new Map<string, Identity>();
  const identity = (name: string) => {
    let found = opened.get(name);
    if (found === undefined) {
      found = openIdentity(envIdentity(env, name), memoryLogger(name).logger)!;
      opened.set(name, found);
    }
    return found;
  };
  return {
    home,
    env,
    identity,
    clients: (name, options = {}) =>
      createClientFactory({ logger: memoryLogger(name).logger, ...options, identity: identity(name) }),
  };
}
