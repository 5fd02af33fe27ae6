import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Env, envHome, envRedis, formatRedisAcl, type RedisAclUser } from "@hookmesh/kit";
import type { Print } from "./args.js";
import { type CommandSpec, parseCommand, UsageError } from "./command.js";
import type { ServiceEntry } from "./services.js";

const FORMATS = ["commands", "aclfile"] as const;
type AclFormat = (typeof FORMATS)[number];

/**
 * `hookmesh redis-acl [--format commands|aclfile]`: one Redis ACL user per service that keeps
 * state, confined to the service's key prefix. A service's password comes from its
 * `<NAME>_REDIS_PASSWORD` (or `_FILE`); otherwise one is made once under
 * `$HOOKMESH_HOME/redis/<name>.password` (mode 0600). The rules carry only SHA-256 hashes, so
 * the output can be piped to `redis-cli` or saved as an ACL file without leaking a password.
 * On a Redis Cluster (`REDIS_CLUSTER_NODES`) the prefixes are the hash-tagged ones the services
 * use there; a Redis node neither replicates nor shares its ACL users, so with a cluster or
 * Sentinel the rules go to every node, replicas included (which a failover makes masters).
 */
export function redisAclCommand(
  args: readonly string[],
  services: readonly ServiceEntry[],
  env: Env,
  print: Print,
  note: Print,
): void {
  const format = parseFormat(args, print);
  if (!format) return;
  const home = envHome(env);
  const users: RedisAclUser[] = [];
  const topologies = new Set<string>();
  for (const service of services) {
    if (service.redisKeyPrefix === undefined) continue;
    const prefix = service.name.toUpperCase();
    const redis = envRedis(env, prefix, service.redisKeyPrefix);
    if (redis.topology) topologies.add(redis.topology.variable);
    const passwordFile = join(home, "redis", `${service.name}.password`);
    const password = redis.password ?? ownPassword(passwordFile);
    users.push({ user: `hookmesh-${service.name}`, keyPrefix: redis.keyPrefix, password });
    if (redis.password === undefined) {
      note(
        `# ${service.name}: ${prefix}_REDIS_URL=redis://hookmesh-${service.name}@<host>:6379 ${prefix}_REDIS_PASSWORD_FILE=${passwordFile}`,
      );
    }
  }
  if (topologies.size > 0) {
    note(`# ${[...topologies].join(", ")}: ACL users are per node; apply these rules on every node, replicas included`);
  }
  print(formatRedisAcl(users, format).trimEnd());
}

const REDIS_ACL = {
  usage: `redis-acl [--format ${FORMATS.join("|")}]`,
  summary: "Prints one Redis ACL user per service that keeps state, confined to its key prefix.",
  options: { format: { type: "string", default: "commands" } },
  flags: { format: "commands (ACL SETUSER lines for redis-cli) or aclfile (an ACL file's lines)" },
  example: "hookmesh redis-acl | redis-cli",
} satisfies CommandSpec;

/** The output format asked for; undefined when `--help` was printed instead. */
function parseFormat(args: readonly string[], print: Print): AclFormat | undefined {
  const parsed = parseCommand(REDIS_ACL, [...args], print);
  if (!parsed) return undefined;
  const format = parsed.values.format as AclFormat;
  if (!FORMATS.includes(format) || parsed.positionals.length > 0) {
    throw new UsageError(`usage: hookmesh ${REDIS_ACL.usage}`);
  }
  return format;
}

/** The password kept in `file`, made (32 random bytes, base64url) when there is none yet. */
function ownPassword(file: string): string {
  try {
    const existing = readFileSync(file, "utf8").trim();
    if (existing !== "") return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 });
  const password = randomBytes(32).toString("base64url");
  // "wx": a password another run wrote meanwhile is kept, never replaced under a running service.
  try {
    writeFileSync(file, `${password}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return readFileSync(file, "utf8").trim();
    throw err;
  }
  chmodSync(file, 0o600);
  return password;
}
