import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { UpstreamError, type Credential, type IdempotencyStore, type Logger, type UpstreamClient } from "@hookmesh/kit";
import { CallInfoSchema, ProviderRequestSchema, type CallInfo } from "../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import {
  AddReactionResponseSchema,
  PostMessageResponseSchema,
  UpdateMessageResponseSchema,
  type AddReactionRequest,
  type AddReactionResponse,
  type PostMessageRequest,
  type PostMessageResponse,
  type UpdateMessageRequest,
  type UpdateMessageResponse,
} from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { IdempotencyUnavailableError, InvalidRequestError } from "./errors.js";
import { slackError, slackErrorName } from "./upstream.js";

/** The `ts` of a message in a dry run, where no message was posted. */
export const DRY_RUN_TS = "dry-run";

/** The caller's cancellation and remaining time, passed down to the calls to Slack. */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface SlackMessagesOptions {
  upstream: UpstreamClient;
  /** The bot token (`SLACK_BOT_TOKEN`), read at each call so that a rotated one applies at once. */
  token: Credential;
  idempotency: IdempotencyStore;
  /** Without a token: answer with the request that would have been sent instead of failing. */
  dryRun: boolean;
  logger: Logger;
  /** Longest a call to Slack may take, retries and waits included. Default 50 s. */
  callTimeoutMs?: number;
}

type Json = Record<string, unknown>;

/** What one Web API call gave: Slack's answer (none in a dry run) and how it went. */
interface Sent {
  body: Json | undefined;
  call: CallInfo;
}

const MAX_IDEMPOTENCY_KEY_LENGTH = 512;

/**
 * Slack's messages and reactions over its Web API: `chat.postMessage`, `chat.update` and
 * `reactions.add`, each a JSON POST with the bot token as a bearer token. Slack answers most
 * errors with HTTP 200 and `ok: false`; those become UpstreamErrors with precise codes here,
 * while the UpstreamClient deals with what HTTP says (timeouts, 5xx, 429 and Retry-After).
 */
export class SlackMessages {
  private readonly callTimeoutMs: number;

  constructor(private readonly options: SlackMessagesOptions) {
    this.callTimeoutMs = options.callTimeoutMs ?? 50_000;
  }

  /**
   * Posts a message, in a thread when `threadTs` is set. Posting is not idempotent for Slack, so
   * the call is retried only when Slack refused it unread (429); with an idempotency key, a
   * repeated call returns the first call's message instead of posting again.
   */
  async postMessage(req: Pick<PostMessageRequest, "channel" | "threadTs" | "text" | "idempotencyKey">, options: CallOptions = {}): Promise<PostMessageResponse> {
    required(req.channel, "channel");
    required(req.text, "text");
    if (req.idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw new InvalidRequestError(`idempotency_key is longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
    }
    const body = { channel: req.channel, text: req.text, ...(req.threadTs !== "" && { thread_ts: req.threadTs }) };
    const auth = this.auth();
    const post = async () => {
      const sent = await this.send("chat.postMessage", body, auth, { ...options, idempotent: false });
      return create(PostMessageResponseSchema, { ...messageId(sent, "chat.postMessage", req.channel), call: sent.call });
    };
    // A dry run posts nothing, so there is nothing to protect; and a stored dry-run answer
    // would be replayed to the first real call once a token is configured.
    if (req.idempotencyKey === "" || auth === undefined) return post();
    return this.once(`postMessage:${req.idempotencyKey}`, post, options.signal);
  }

  /** Replaces a message's text (`chat.update`); repeating it is harmless, so it is retried on outages. */
  async updateMessage(req: Pick<UpdateMessageRequest, "channel" | "ts" | "text">, options: CallOptions = {}): Promise<UpdateMessageResponse> {
    required(req.channel, "channel");
    required(req.ts, "ts");
    required(req.text, "text");
    const sent = await this.send("chat.update", { channel: req.channel, ts: req.ts, text: req.text }, this.auth(), { ...options, idempotent: true });
    return create(UpdateMessageResponseSchema, { ...messageId(sent, "chat.update", req.channel, req.ts), call: sent.call });
  }

  /** Adds a reaction (`reactions.add`); one that is already there (`already_reacted`) is success. */
  async addReaction(req: Pick<AddReactionRequest, "channel" | "timestamp" | "name">, options: CallOptions = {}): Promise<AddReactionResponse> {
    required(req.channel, "channel");
    required(req.timestamp, "timestamp");
    // Slack's names have no colons (`eyes`); `:eyes:` as typed in Slack is taken too.
    const name = req.name.trim().replace(/^:+|:+$/g, "");
    required(name, "name");
    const body = { channel: req.channel, timestamp: req.timestamp, name };
    const sent = await this.send("reactions.add", body, this.auth(), { ...options, idempotent: true, accept: ["already_reacted"] });
    return create(AddReactionResponseSchema, { call: sent.call });
  }

  /**
   * The Authorization header for the current token; undefined for a dry run (no token, dry run
   * on); MissingCredentialError naming the variable when there is no token and no dry run.
   */
  private auth(): string | undefined {
    const token = this.options.token.get();
    if (token !== undefined) return `Bearer ${token}`;
    if (this.options.dryRun) return undefined;
    this.options.token.require();
    return undefined;
  }

  /** One Web API call; in a dry run (no `auth`) nothing is sent and the call is only described. */
  private async send(
    method: string,
    body: Json,
    auth: string | undefined,
    options: CallOptions & { idempotent: boolean; accept?: readonly string[] },
  ): Promise<Sent> {
    const { upstream, logger } = this.options;
    const path = `/${method}`;
    const request = create(ProviderRequestSchema, upstream.describe({ method: "POST", path, body }));
    if (auth === undefined) {
      logger.info({ method: request.method, url: request.url }, `dry run: ${method} not sent to slack (no ${this.options.token.variable})`);
      return { body: undefined, call: create(CallInfoSchema, { dryRun: true, request }) };
    }
    const res = await upstream.request({
      method: "POST",
      path,
      body,
      auth,
      idempotent: options.idempotent,
      ...(options.signal && { signal: options.signal }),
      timeoutMs: Math.min(options.timeoutMs ?? this.callTimeoutMs, this.callTimeoutMs),
    });
    const error = slackErrorName(res.body);
    if (error !== undefined && !options.accept?.includes(error)) throw slackError(method, res.status, res.body);
    if (error === undefined && (res.body as Json | undefined)?.ok !== true) throw unexpectedAnswer(method);
    return { body: res.body as Json, call: create(CallInfoSchema, { request }) };
  }

  /** `run` once per key: a repeated call gets the stored response, marked replayed. */
  private async once(key: string, run: () => Promise<PostMessageResponse>, signal: AbortSignal | undefined): Promise<PostMessageResponse> {
    let ran = false;
    let posted: PostMessageResponse | undefined;
    let result: { response: PostMessageResponse; replayed: boolean };
    try {
      result = await this.options.idempotency.once(
        key,
        PostMessageResponseSchema,
        async () => {
          ran = true;
          posted = await run();
          return posted;
        },
        signal,
      );
    } catch (err) {
      // Posted, but the store failed to keep the answer: the caller gets it all the same, as a
      // failure would make it post again.
      if (posted !== undefined) {
        this.options.logger.warn({ err: errorText(err) }, "slack message posted but its idempotency key could not be recorded");
        return posted;
      }
      // The call's own failure, or the store's: without the store, posting could post twice.
      if (ran || signal?.aborted) throw err;
      throw new IdempotencyUnavailableError(err);
    }
    const { response, replayed } = result;
    if (replayed) response.call = create(CallInfoSchema, { request: response.call?.request, replayed: true });
    return response;
  }
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function required(value: string, field: string): void {
  if (value.trim() === "") throw new InvalidRequestError(`${field} is required`);
}

const text = (value: unknown): string => (typeof value === "string" ? value : "");

/**
 * The posted or updated message's channel (the id Slack resolved, say, `#general` to) and `ts`;
 * the placeholder `ts` in a dry run.
 */
function messageId(sent: Sent, method: string, channel: string, ts?: string): { channel: string; ts: string } {
  if (sent.body === undefined) return { channel, ts: ts ?? DRY_RUN_TS };
  const answered = { channel: text(sent.body.channel) || channel, ts: text(sent.body.ts) || (ts ?? "") };
  if (answered.ts === "") throw unexpectedAnswer(method);
  return answered;
}

/** A 2xx that is not the Web API's JSON: most often an API URL that points elsewhere. */
function unexpectedAnswer(method: string): UpstreamError {
  return new UpstreamError(Code.Unknown, `slack ${method} answered without "ok": true; SLACK_API_URL must be the Web API root, e.g. https://slack.com/api`);
}
