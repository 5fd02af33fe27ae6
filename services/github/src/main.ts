import { connectRedis, Credential, HealthState, IdempotencyStore, runMain, ServingStatus } from "@hookmesh/kit";
import { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { GitHubAuth } from "./auth.js";
import { APP_KEY_VARIABLE, loadConfig, TOKEN_VARIABLE } from "./config.js";
import { GitHubApi } from "./github-api.js";
import { build } from "./server.js";
import { githubUpstream } from "./upstream.js";


await runMain("github", loadConfig, async (config, logger) => {
  // Serving follows the Redis connection: without it, a keyed comment cannot be made safely.
  const health = new HealthState([GitHubService.typeName]);
  const redis = await connectRedis({
    url: config.redisUrl,
    variable: "REDIS_URL",
    logger,
    onReadyChange: (ready) => health.setAll(ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING),
  });
  const token = new Credential(TOKEN_VARIABLE, process.env, logger);
  const privateKey = new Credential(APP_KEY_VARIABLE, process.env, logger);
  const stopWatching = [token.watch(), privateKey.watch()];
  const upstream = githubUpstream(config.apiUrl, logger);
  const auth = new GitHubAuth({ upstream, token, ...(config.appId !== undefined && { app: { id: config.appId, privateKey } }), logger });
  const api = new GitHubApi({
    upstream,
    auth,
    idempotency: new IdempotencyStore(redis, { keyPrefix: config.redisKeyPrefix, ttlMs: config.idempotencyTtlMs, lockMs: config.idempotencyLockMs }),
    dryRun: config.dryRun,
    logger,
  });
  const server = build({ api, health, logger, tls: config.tls });
  await server.listen(config.port, config.host);
  const mode = auth.mode();
  if (mode === "app" && token.configured) logger.info(`GitHub App auth (GITHUB_APP_ID ${config.appId}); ${TOKEN_VARIABLE} is ignored`);
  if (mode === "none") {
    if (config.dryRun) logger.warn(`${TOKEN_VARIABLE} is not set (nor GITHUB_APP_ID): dry run, requests are answered but not sent to GitHub`);
    else logger.warn(`${TOKEN_VARIABLE} is not set (nor GITHUB_APP_ID): calls fail with FailedPrecondition until it is (or set HOOKMESH_DRY_RUN=1)`);
  }
  logger.info({ apiUrl: config.apiUrl, auth: mode, dryRun: config.dryRun && mode === "none" }, "calling GitHub");
  return {
    async stop() {
      await server.close(config.shutdownGraceMs);
      for (const stop of stopWatching) stop();
      upstream.shutdown();
      redis.disconnect();
    },
  };
});
