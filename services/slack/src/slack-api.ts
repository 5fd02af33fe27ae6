import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  type Caller,
  type Credential,
  InvalidRequestError,
  type ProviderCalls,
  type UpstreamClient,
  UpstreamError,
} from "@hookmesh/kit";
import {
  type AddReactionRequest,
  type AddReactionResponse,
  AddReactionResponseSchema,
  type PostMessageRequest,
  type PostMessageResponse,
  PostMessageResponseSchema,
  type UpdateMessageRequest,
  type UpdateMessageResponse,
  UpdateMessageResponseSchema,
} from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { slackError, slackErrorName } from "./upstream.js";

export interface SlackApiDeps {
  /** The client for SLACK_API_URL, with `slackPolicy`. */
  upstream: UpstreamClient;
  /** The bot token (`SLACK_BOT_TOKEN`), read at each call so that a rotated one applies at once. */
  token: Credential;
  /** Live or dry run, and PostMessage once per idempotency key. */
  calls: ProviderCalls;
}

type Json = Record<string, unknown>;

/**
 * Slack's messages and reactions over its Web API: `chat.postMessage`, `chat.update` and
 * `reactions.add`, each a JSON POST with the bot token as a bearer token. Slack answers most
 * errors with HTTP 200 and `ok: false`; those become UpstreamErrors with precise codes here,
 * while the UpstreamClient deals with what HTTP says (timeouts, 5xx, 429 and Retry-After).
 */
export class SlackApi {
  constructor(private readonly deps: SlackApiDeps) {}

  /**
   * Posts a message, in a thread when `threadTs` is set. Posting is not idempotent for Slack, so
   * the call is retried only when Slack refused it unread (429); with an idempotency key, a
   * repeated call returns the first call's message instead of posting again.
   */
  async postMessage(
    req: Pick<PostMessageRequest, "channel" | "threadTs" | "text" | "idempotencyKey">,
    caller: Caller = {},
  ): Promise<PostMessageResponse> {
    required(req.channel, "channel");
    required(req.text, "text");
    const body = { channel: req.channel, text: req.text, ...(req.threadTs !== "" && { thread_ts: req.threadTs }) };
    return this.deps.calls.create(
      webApi("chat.postMessage", body),
      caller,
      (caller) => this.send("chat.postMessage", body, { idempotent: false }, caller),
      {
        rpc: "postMessage",
        idempotencyKey: req.idempotencyKey,
        schema: PostMessageResponseSchema,
        respond: (created) =>
          create(PostMessageResponseSchema, {
            ...(created.dryRun
              ? { channel: req.channel, ts: dryRunTs(created.id) }
              : messageId(created.answer, "chat.postMessage", req.channel)),
            call: created.call,
          }),
      },
    );
  }

  /** Replaces a message's text (`chat.update`); repeating it is harmless, so it is retried on outages. */
  async updateMessage(
    req: Pick<UpdateMessageRequest, "channel" | "ts" | "text">,
    caller: Caller = {},
  ): Promise<UpdateMessageResponse> {
    required(req.channel, "channel");
    required(req.ts, "ts");
    required(req.text, "text");
    const body = { channel: req.channel, ts: req.ts, text: req.text };
    const sent = await this.deps.calls.send(webApi("chat.update", body), caller, (caller) =>
      this.send("chat.update", body, { idempotent: true }, caller),
    );
    return create(UpdateMessageResponseSchema, {
      ...(sent.dryRun
        ? { channel: req.channel, ts: req.ts }
        : messageId(sent.answer, "chat.update", req.channel, req.ts)),
      call: sent.call,
    });
  }

  /** Adds a reaction (`reactions.add`); one that is already there (`already_reacted`) is success. */
  async addReaction(
    req: Pick<AddReactionRequest, "channel" | "timestamp" | "name">,
    caller: Caller = {},
  ): Promise<AddReactionResponse> {
    required(req.channel, "channel");
    required(req.timestamp, "timestamp");
    // Slack's names have no colons (`eyes`); `:eyes:` as typed in Slack is taken too.
    const name = req.name.trim().replace(/^:+|:+$/g, "");
    required(name, "name");
    const body = { channel: req.channel, timestamp: req.timestamp, name };
    const sent = await this.deps.calls.send(webApi("reactions.add", body), caller, (caller) =>
      this.send("reactions.add", body, { idempotent: true, accept: ["already_reacted"] }, caller),
    );
    return create(AddReactionResponseSchema, { call: sent.call });
  }

  /** One Web API call with the bot token; an `ok: false` answer (other than those accepted) fails. */
  private async send(
    method: string,
    body: Json,
    options: { idempotent: boolean; accept?: readonly string[] },
    caller: Caller,
  ): Promise<Json> {
    const res = await this.deps.upstream.request({
      ...webApi(method, body),
      auth: `Bearer ${this.deps.token.require()}`,
      idempotent: options.idempotent,
      ...caller,
    });
    const error = slackErrorName(res.body);
    if (error !== undefined && !options.accept?.includes(error)) throw slackError(method, res.status, res.body);
    if (error === undefined && (res.body as Json | undefined)?.ok !== true) throw unexpectedAnswer(method);
    return res.body as Json;
  }
}

/** A Web API method's request: a JSON POST to `/{method}`. */
function webApi(method: string, body: Json) {
  return { method: "POST", path: `/${method}`, body } as const;
}

function required(value: string, field: string): void {
  if (value.trim() === "") throw new InvalidRequestError(`${field} is required`, field);
}

const text = (value: unknown): string => (typeof value === "string" ? value : "");

/** The posted or updated message's channel (the id Slack resolved, say, `#general` to) and `ts`. */
function messageId(answer: Json, method: string, channel: string, ts?: string): { channel: string; ts: string } {
  const answered = { channel: text(answer.channel) || channel, ts: text(answer.ts) || (ts ?? "") };
  if (answered.ts === "") throw unexpectedAnswer(method);
  return answered;
}

/** A dry run's synthetic id as a message `ts`: seconds since the epoch (ten digits), a dot, six digits. */
function dryRunTs(id: bigint): string {
  const seconds = 1_000_000_000n + (id % 9_000_000_000n);
  const sequence = (id / 9_000_000_000n) % 1_000_000n;
  return `${seconds}.${sequence.toString().padStart(6, "0")}`;
}

/** A 2xx that is not the Web API's JSON: most often an API URL that points elsewhere. */
function unexpectedAnswer(method: string): UpstreamError {
  return new UpstreamError(
    Code.Unknown,
    `slack ${method} answered without "ok": true; SLACK_API_URL must be the Web API root, e.g. https://slack.com/api`,
  );
}
