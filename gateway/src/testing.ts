import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import type { Env, Logger } from "@hookmesh/kit";
import { TEST_REDIS_URL, type TestRedis } from "@hookmesh/kit/testing";
import type { WebhookDefinition } from "@octokit/webhooks-examples";
import { type ComposedGateway, composeGateway, type GatewayConfig, loadConfig } from "./index.js";

/** The signing secrets of the test configuration, one per built-in provider. */
export const TEST_SECRETS = {
  github: "github-test-secret",
  slack: "slack-test-secret",
  jira: "jira-test-secret",
  sentry: "sentry-test-secret",
};

/**
 * What tests change from the production defaults, and why: every provider signed with a known
 * secret, a rate limit no test reaches unless it sets its own, an hour of retention (nothing
 * outlives a test), a recognizable Retry-After, and no drain wait at close; and cleartext on
 * loopback, because the gateway's own tests are about the gateway: mTLS and the access policy
 * are kit's, and the end-to-end tests run the mesh under the defaults (`testIdentities().env`).
 */
export const GATEWAY_TEST_ENV: Env = {
  HOOKMESH_INSECURE: "1",
  GITHUB_WEBHOOK_SECRET: TEST_SECRETS.github,
  SLACK_SIGNING_SECRET: TEST_SECRETS.slack,
  JIRA_WEBHOOK_SECRET: TEST_SECRETS.jira,
  SENTRY_CLIENT_SECRET: TEST_SECRETS.sentry,
  DELIVERY_RETENTION: "1h",
  GATEWAY_DEDUP_WINDOW: "1h",
  GATEWAY_RATE_LIMIT: "10000",
  GATEWAY_RATE_BURST: "10000",
  GATEWAY_RETRY_AFTER_SECONDS: "7",
  SHUTDOWN_GRACE_MS: "0",
};

/** The configuration `loadConfig` makes of the test defaults and `env`, over the test's Redis prefix. */
export function gatewayTestConfig(db: Pick<TestRedis, "prefix">, tasksUrl: string, env: Env = {}): GatewayConfig {
  return loadConfig({
    REDIS_URL: TEST_REDIS_URL,
    GATEWAY_REDIS_PREFIX: `${db.prefix}gateway:`,
    TASKS_URL: tasksUrl,
    ...GATEWAY_TEST_ENV,
    ...env,
  });
}

export interface RunningGateway extends ComposedGateway {
  /** The HTTP endpoints' base URL, e.g. `http://127.0.0.1:12345`. */
  base: string;
  /** The gRPC URL. */
  grpcUrl: string;
  /**
   * Resolves once the outbox is empty, every acknowledged delivery submitted to tasks and
   * logged as what it became; at once while tasks is not serving (then nothing would drain it).
   */
  forwarded(timeoutMs?: number): Promise<void>;
}

const running = new Map<string, RunningGateway>();

/**
 * Waits until the gateway at `base` (started by `startGateway` in this process) has forwarded
 * what it acknowledged: a test that checks a delivery's task or its log entry right after the
 * 202 looks after the forwarder did its work behind the acknowledgment. No-op for any other URL.
 */
export async function forwardedAt(base: string, timeoutMs?: number): Promise<void> {
  await running.get(base)?.forwarded(timeoutMs);
}

/**
 * The gateway as production composes it, started and listening on 127.0.0.1 (ports 0),
 * feeding `tasksUrl`. The one injected difference: a client factory whose circuit breaker
 * resets sooner, so that a test sees a restarted tasks service within its time.
 */
export async function startGateway(
  db: Pick<TestRedis, "prefix">,
  tasksUrl: string,
  logger: Logger,
  env: Env = {},
): Promise<RunningGateway> {
  const config = gatewayTestConfig(db, tasksUrl, env);
  const service = await composeGateway(config, {
    logger,
    env: {},
    clientOptions: { breaker: { resetTimeoutMs: 500 } },
  });
  const { http, grpc } = await service.server.listen(0, 0, "127.0.0.1");
  service.start();
  const scheme = config.identity.insecure ? "http" : "https";
  const base = `http://127.0.0.1:${http.port}`;
  const close = service.close.bind(service);
  const gateway: RunningGateway = Object.assign(service, {
    base,
    grpcUrl: `${scheme}://127.0.0.1:${grpc.port}`,
    async forwarded(timeoutMs = 10_000) {
      // Just started, the gateway may not have heard from tasks yet; stopped, it will not.
      await service.tasksHealth.untilServing(AbortSignal.timeout(1_000));
      const deadline = performance.now() + timeoutMs;
      while (service.tasksHealth.isServing && performance.now() < deadline) {
        if ((await service.outbox.length().catch(() => 0)) === 0) return;
        await sleep(5);
      }
    },
    async close() {
      running.delete(base);
      await close();
    },
  });
  running.set(base, gateway);
  return gateway;
}

/**
 * Real GitHub webhook payloads from `@octokit/webhooks-examples`. The package's main entry is
 * a JSON file (an array of {name, examples}); `require` loads it the same way under Node and
 * vitest, where a default `import` of JSON would need an import attribute in Node.
 */
const definitions = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];

export type Payload = Record<string, unknown>;

/** Every example payload of one event type; fails loudly if the package has none. */
export function examplesOf(eventType: string): Payload[] {
  const definition = definitions.find((d) => d.name === eventType);
  if (!definition || definition.examples.length === 0) throw new Error(`no examples for ${eventType}`);
  // Copies, so that a test editing a payload cannot affect another.
  return definition.examples.map((p) => structuredClone(p) as unknown as Payload);
}

/** The first example of `eventType` whose `action` is `action`. */
export function exampleOf(eventType: string, action?: string): Payload {
  const found = examplesOf(eventType).find((p) => action === undefined || p.action === action);
  if (!found) throw new Error(`no ${eventType} example with action ${action}`);
  return found;
}

/** A recorded Slack, Jira or Sentry delivery's bytes exactly as stored: deliveries are signed and verified on these. */
export function fixture(name: string): Buffer {
  return readFileSync(new URL(`../test/fixtures/${name}`, import.meta.url));
}
