import { createHash } from "node:crypto";

/** One service's Redis identity: its ACL user and the key prefix it owns. */
export interface RedisAclUser {
  /** The ACL user name, e.g. `hookmesh-tasks`. */
  user: string;
  /** Every key (and pub/sub channel) the service touches starts with it, e.g. `hookmesh:tasks:`. */
  keyPrefix: string;
  /** The user's password; only its SHA-256 goes into the rules. */
  password: string;
}

/**
 * The commands a mesh service may run, as Redis ACL rules applied left to right: data
 * commands of every type, scripts (BullMQ's and the services' own Lua), transactions and the
 * connection commands; then everything Redis marks dangerous or administrative is taken away
 * again (FLUSHALL, KEYS, CONFIG, DEBUG, CLIENT KILL, ACL, MONITOR …), whatever category let it
 * in; last `INFO` comes back, because BullMQ reads the server's version and eviction policy
 * from it at start (it shows server statistics, never data), and plain pub/sub on the
 * service's own channels (`&prefix*`), which the tasks service's timeline watchers share.
 * On a Redis Cluster the client learns which node serves which slot with `CLUSTER SLOTS` and
 * checks the cluster's state with `CLUSTER INFO`; both show only the topology.
 */
const COMMAND_RULES = [
  "-@all",
  "+@read",
  "+@write",
  "+@keyspace",
  "+@stream",
  "+@scripting",
  "+@transaction",
  "+@connection",
  "+@blocking",
  "-@admin",
  "-@dangerous",
  "+info",
  "+publish",
  "+subscribe",
  "+unsubscribe",
  "+cluster|slots",
  "+cluster|info",
] as const;

/**
 * The `ACL SETUSER` arguments for one service: on, its password's hash, only its own keys
 * and channels, and the commands above. `reset` first, so applying the rules again replaces
 * whatever the user had.
 */
export function redisAclRule(user: RedisAclUser): string[] {
  if (!/^[A-Za-z0-9_.:-]+$/.test(user.user)) throw new Error(`not a Redis user name: "${user.user.slice(0, 64)}"`);
  if (user.keyPrefix === "" || /[*?[\]\\\s]/.test(user.keyPrefix)) {
    throw new Error(
      `a Redis key prefix must be non-empty and free of glob characters and spaces: "${user.keyPrefix.slice(0, 64)}"`,
    );
  }
  if (user.password === "") throw new Error(`the password for ${user.user} is empty`);
  const hash = createHash("sha256").update(user.password).digest("hex");
  return [user.user, "reset", "on", `#${hash}`, `~${user.keyPrefix}*`, `&${user.keyPrefix}*`, ...COMMAND_RULES];
}

/**
 * The rules as an ACL file (`aclfile` in redis.conf, one `user …` line each) or as
 * `ACL SETUSER` commands for redis-cli. Passwords appear only as SHA-256 hashes.
 */
export function formatRedisAcl(users: readonly RedisAclUser[], format: "aclfile" | "commands"): string {
  return users
    .map((user) => {
      const [name, ...rules] = redisAclRule(user);
      return format === "aclfile"
        ? `user ${name} ${rules.filter((r) => r !== "reset").join(" ")}`
        : `ACL SETUSER ${name} ${rules.join(" ")}`;
    })
    .join("\n")
    .concat("\n");
}
