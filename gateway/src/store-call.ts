import { createHash } from "node:crypto";
import { execWaitingForReplicas, type RedisClient, storeCaller, type WaitReplicas } from "@hookmesh/kit";

/**
 * Runs the gateway's Redis calls. An outage becomes kit's StoreUnavailableError: deliveries
 * cannot be made durable here (RPC: UNAVAILABLE; webhook: 503 with Retry-After, so the sender
 * keeps the delivery). Reply errors lose the command arguments (a custom webhook's secret, a
 * webhook body) before anything can log them.
 */
export const storeCall = storeCaller("gateway store");

const shas = new Map<string, string>();

/**
 * Runs a Lua script by its SHA-1 (EVALSHA), sending its text only when this Redis does not
 * have it yet: the scripts on the webhook path are sent once per Redis, not with every request.
 * With `wait`, the script's writes must reach that many replicas before it resolves (see
 * kit's execWaitingForReplicas): what an acknowledgment promises must survive a failover.
 */
export async function runScript(
  redis: RedisClient,
  script: string,
  keys: readonly string[],
  args: ReadonlyArray<string | number | Buffer>,
  wait?: WaitReplicas,
): Promise<unknown> {
  let sha = shas.get(script);
  if (sha === undefined) {
    sha = createHash("sha1").update(script).digest("hex");
    shas.set(script, sha);
  }
  const known = sha;
  if (wait === undefined) {
    return redis.evalsha(known, keys.length, ...keys, ...args).catch((err: Error) => {
      if (!err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(script, keys.length, ...keys, ...args);
    });
  }
  const [reply] = await execWaitingForReplicas(
    redis,
    (pipeline) => pipeline.evalsha(known, keys.length, ...keys, ...args),
    wait,
  ).catch((err: Error) => {
    if (!err.message.startsWith("NOSCRIPT")) throw err;
    return execWaitingForReplicas(redis, (pipeline) => pipeline.eval(script, keys.length, ...keys, ...args), wait);
  });
  return reply;
}
