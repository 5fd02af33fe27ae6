import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { type CallInfo, CallInfoSchema } from "../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import { abortAfter } from "../abort.js";
import { IdempotencyUnavailableError, InvalidRequestError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { RedisClient } from "../redis.js";
import { type Caller, type DescribedRequest, type UpstreamClient, UpstreamError } from "./client.js";
import type { MissingCredentialError } from "./credential.js";
import { type Claim, IdempotencyStore } from "./idempotency.js";

/**
 * How long a created thing is remembered under its idempotency key: a task's automatic retries
 * (minutes) and a manual `hookmesh tasks retry` (days later, after a weekend) fall within it.
 */
export const IDEMPOTENCY_TTL_MS = 7 * 24 * 60 * 60_000;

/** The longest idempotency key taken; keys are short (`{task id}:ack`), and this keeps one from filling the store. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 512;

/** Attempts at recording a result once the provider answered, and the first wait between them (doubling). */
const RECORD_ATTEMPTS = 3;
const RECORD_RETRY_MS = 100;

/** What a call gave: the provider's answer, or nothing in a dry run; and how it went. */
export type Sent<T> = { dryRun: false; answer: T; call: CallInfo } | { dryRun: true; call: CallInfo };

/**
 * What a creating call gave. A dry run has a synthetic `id` for what it would have created:
 * derived from the idempotency key (or, without one, from the request), so the same call gets
 * the same id, and a later edit or delete of that id is an ordinary dry-run call. Services write
 * it in the provider's format.
 */
export type Created<T> = { dryRun: false; answer: T; call: CallInfo } | { dryRun: true; call: CallInfo; id: bigint };

export interface ProviderCallsOptions {
  upstream: UpstreamClient;
  /** The service's Redis, for idempotency keys. */
  redis: RedisClient;
  /** The service's own Redis key prefix. */
  keyPrefix: string;
  logger: Logger;
  /** HOOKMESH_DRY_RUN: while a credential is missing, describe each call instead of failing. */
  dryRun: boolean;
  /**
   * What keeps calls from reaching the provider (a credential, a base URL), as the error that
   * names the variable to set; undefined when nothing does. Asked at each call, since
   * credentials are re-read when they rotate.
   */
  missing(): MissingCredentialError | undefined;
}

/** What makes a call a creating one: its key, and the response stored under it. */
export interface Creation<Desc extends DescMessage, T> {
  /** The RPC, which scopes the key: `createComment`. */
  rpc: string;
  /** Empty for none. */
  idempotencyKey: string;
  /** The response's schema; the response is what is stored under the key, and must have a `call` field. */
  schema: Desc;
  /** The RPC's response, from what the call gave. */
  respond(created: Created<T>): MessageShape<Desc>;
}

/**
 * The one way an integration service calls its provider: live, or described in a dry run, and
 * a creating call once per idempotency key.
 *
 * Each call decides once whether it is live: a credential is configured, or else it is a dry
 * run (HOOKMESH_DRY_RUN), or else it fails with MissingCredentialError naming the variable.
 * Every answer carries a CallInfo with the request as sent (or as it would have been); dry runs
 * are logged in one format.
 *
 * With an idempotency key, a creating call behaves the same in every service:
 * - a repeated call gets the first call's response back, with `call.replayed` set;
 * - a call made while the first is in flight waits for it;
 * - the store failing before the provider is called fails the call with Unavailable
 *   (IdempotencyUnavailableError): nothing was sent, so a retry is safe;
 * - the store failing after the provider answered does not fail the call: the provider's answer
 *   is returned (a failure would invite the caller to create a second one), recording it is
 *   retried a few times, and a failure to record is logged;
 * - a provider error frees the key and propagates;
 * - the caller's cancellation ends the call with Canceled, its deadline with DeadlineExceeded;
 * - the call never runs past its key's lock, so no other call takes the key over mid-call.
 * Dry runs create nothing, so nothing is stored: the first live call with the key must create.
 */
export class ProviderCalls {
  private readonly store: IdempotencyStore;

  constructor(private readonly options: ProviderCallsOptions) {
    this.store = new IdempotencyStore(options.redis, {
      keyPrefix: options.keyPrefix,
      ttlMs: IDEMPOTENCY_TTL_MS,
      // A call holds its key for at most as long as it can take; past that, its caller crashed.
      lockMs: options.upstream.longestCallMs,
    });
  }

  /** What a dry run answers where the provider would have answered with text (a title, a summary). */
  get dryRunText(): string {
    return `dry run: nothing was sent to ${this.options.upstream.title}`;
  }

  /** One call that creates nothing (a read, an edit, a delete): sent, or described in a dry run. */
  async send<T>(request: DescribedRequest, caller: Caller, send: (caller: Caller) => Promise<T>): Promise<Sent<T>> {
    const call = this.callInfo(request);
    if (call.dryRun) return { dryRun: true, call };
    return { dryRun: false, answer: await send(caller), call };
  }

  /** A call that creates something: as `send`, and once per idempotency key (see the class). */
  async create<Desc extends DescMessage, T>(
    request: DescribedRequest,
    caller: Caller,
    send: (caller: Caller) => Promise<T>,
    creation: Creation<Desc, T>,
  ): Promise<MessageShape<Desc>> {
    const key = creation.idempotencyKey.trim();
    if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw new InvalidRequestError(
        `idempotency_key is longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`,
        "idempotency_key",
      );
    }
    const call = this.callInfo(request);
    if (call.dryRun) {
      const { method, url, body } = call.request!;
      return creation.respond({
        dryRun: true,
        call,
        id: dryRunId(key === "" ? `${method} ${url} ${body}` : `${creation.rpc}:${key}`),
      });
    }
    const run = async (caller: Caller) => creation.respond({ dryRun: false, answer: await send(caller), call });
    if (key === "") return run(caller);
    return this.once(`${creation.rpc}:${key}`, creation.schema, caller, run);
  }

  /** One line at start-up on where calls go: to the provider, nowhere (dry run), or nowhere until a variable is set. */
  logStartup(fields: Record<string, unknown> = {}): void {
    const { logger, dryRun } = this.options;
    const provider = this.options.upstream.title;
    const missing = this.options.missing();
    if (missing === undefined) logger.info(fields, `calling ${provider}`);
    else if (dryRun)
      logger.warn(
        { ...fields, missing: missing.variable },
        `${missing.variable} is not set: dry run, calls are described and nothing is sent to ${provider}`,
      );
    else
      logger.warn(
        { ...fields, missing: missing.variable },
        `${missing.variable} is not set: calls fail with FailedPrecondition until it is (or HOOKMESH_DRY_RUN=1)`,
      );
  }

  /** How this call goes: live, or a dry run (logged); MissingCredentialError when it can be neither. */
  private callInfo(request: DescribedRequest): CallInfo {
    const { upstream, logger } = this.options;
    const missing = this.options.missing();
    if (missing !== undefined && !this.options.dryRun) throw missing;
    const call = create(CallInfoSchema, { dryRun: missing !== undefined, request: upstream.describe(request) });
    if (missing !== undefined) {
      const { method, url } = call.request!;
      logger.info(
        { upstream: upstream.name, method, url, missing: missing.variable },
        `dry run: request not sent to ${upstream.title}`,
      );
    }
    return call;
  }

  private async once<Desc extends DescMessage>(
    key: string,
    schema: Desc,
    caller: Caller,
    run: (caller: Caller) => Promise<MessageShape<Desc>>,
  ): Promise<MessageShape<Desc>> {
    // A wait for another call's result ends when the caller cancels or its deadline passes.
    const wait = abortAfter(caller.signal, (caller.deadline ?? Infinity) - Date.now());
    let claim: Claim<Desc>;
    try {
      claim = await this.store.claim(key, schema, wait.signal);
    } catch (err) {
      const name = this.options.upstream.name;
      if (caller.signal?.aborted) throw new UpstreamError(Code.Canceled, `${name}: canceled`);
      if (wait.signal.aborted) throw new UpstreamError(Code.DeadlineExceeded, `${name}: deadline exceeded`);
      throw new IdempotencyUnavailableError(err);
    } finally {
      wait.clear();
    }
    if ("stored" in claim) {
      const stored = claim.stored as MessageShape<Desc> & { call?: CallInfo };
      // Nothing was sent this time; the request is the one the first call sent.
      return Object.assign(stored, { call: create(CallInfoSchema, { request: stored.call?.request, replayed: true }) });
    }
    let response: MessageShape<Desc>;
    try {
      response = await run({
        signal: caller.signal,
        deadline: Math.min(caller.deadline ?? Infinity, claim.lockedUntil),
      });
    } catch (err) {
      await this.store.release(key).catch((releaseErr: unknown) => {
        this.options.logger.warn(
          { upstream: this.options.upstream.name, key, err: message(releaseErr) },
          "could not free the idempotency key of a failed call; a retry waits for its lock to expire",
        );
      });
      throw err;
    }
    await this.record(key, schema, response);
    return response;
  }

  /** Records the provider's answer under its key, a few times over a store hiccup; never fails. */
  private async record<Desc extends DescMessage>(
    key: string,
    schema: Desc,
    response: MessageShape<Desc>,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.store.record(key, schema, response);
        return;
      } catch (err) {
        if (attempt >= RECORD_ATTEMPTS) {
          this.options.logger.error(
            { upstream: this.options.upstream.name, key, err: message(err) },
            `${this.options.upstream.title} answered, but the idempotency key could not be recorded: a call with this key may act again once its lock expires`,
          );
          return;
        }
        await sleep(RECORD_RETRY_MS * 2 ** (attempt - 1));
      }
    }
  }
}

/**
 * A stable, positive number (below 2^53, so JSON readers keep it exact) standing for what a
 * dry run would have created, from `seed`.
 */
function dryRunId(seed: string): bigint {
  const id = createHash("sha256").update(seed).digest().readBigUInt64BE(0) >> 11n;
  return id === 0n ? 1n : id;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
