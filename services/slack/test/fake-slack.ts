import { type Answer, FakeProvider, type ReceivedRequest, type Reply } from "@hookmesh/kit/testing";

interface Message {
  channel: string;
  ts: string;
  text: string;
  threadTs?: string;
  reactions: Set<string>;
}

export const TEST_TOKEN = "xoxb-1234-5678-s3cretT0kenValue";
/** The channel the fake workspace has; `#general` is its name. */
export const CHANNEL = "C0123GENERAL";

/**
 * A local stand-in for Slack's Web API at `{url}/chat.postMessage`, `/chat.update` and
 * `/reactions.add`: JSON bodies, the bot token as `Authorization: Bearer`, and errors answered
 * the way Slack does, HTTP 200 with `{"ok": false, "error": "..."}`. Tests script answers per
 * Web API method; unscripted requests get Slack's behaviour over an in-memory workspace with one
 * channel.
 */
export class FakeSlack extends FakeProvider {
  /** The token the workspace accepts; tests change it to check a rotated one. */
  token = TEST_TOKEN;
  readonly messages: Message[] = [];
  private nextTs = 1_700_000_000;

  constructor() {
    super("/api");
  }

  /** The next requests to a Web API method (e.g. `chat.postMessage`) get these answers, in order. */
  script(method: string, ...answers: Answer[]): void {
    this.answerTo(`POST /${method}`, ...answers);
  }

  /** The requests made to one Web API method. */
  calls(method: string): ReceivedRequest[] {
    return this.received.filter((r) => r.path === `/${method}`);
  }

  /** A message in the workspace, as if posted earlier. */
  seed(text: string, channel = CHANNEL): string {
    const ts = this.newTs();
    this.messages.push({ channel, ts, text, reactions: new Set() });
    return ts;
  }

  /** What Slack answers. */
  protected respond({ method, path, headers, body }: ReceivedRequest): Reply {
    const fail = (error: string, extra: Record<string, unknown> = {}) => ({ body: { ok: false, error, ...extra } });
    if (method !== "POST") return { status: 405, body: { ok: false, error: "method_not_supported_for_channel_type" } };
    const auth = headers.authorization;
    if (auth === undefined) return fail("not_authed");
    if (auth !== `Bearer ${this.token}`) return fail("invalid_auth");
    if (!headers["content-type"]?.startsWith("application/json")) return fail("invalid_arguments");
    const args = (typeof body === "object" && body !== null ? body : {}) as Record<string, string | undefined>;
    const channel = args.channel === "#general" ? CHANNEL : args.channel;
    if (channel !== CHANNEL) return fail("channel_not_found");
    const find = (ts: string | undefined) => this.messages.find((m) => m.channel === channel && m.ts === ts);
    switch (path) {
      case "/chat.postMessage": {
        if (!args.text) return fail("no_text");
        const ts = this.newTs();
        this.messages.push({
          channel,
          ts,
          text: args.text,
          ...(args.thread_ts && { threadTs: args.thread_ts }),
          reactions: new Set(),
        });
        const message = {
          type: "message",
          user: "U0HOOKMESH",
          text: args.text,
          ts,
          ...(args.thread_ts && { thread_ts: args.thread_ts }),
        };
        return { body: { ok: true, channel, ts, message } };
      }
      case "/chat.update": {
        const message = find(args.ts);
        if (message === undefined) return fail("message_not_found");
        if (!args.text) return fail("no_text");
        message.text = args.text;
        return { body: { ok: true, channel, ts: message.ts, text: message.text } };
      }
      case "/reactions.add": {
        const message = find(args.timestamp);
        if (message === undefined) return fail("message_not_found");
        if (!args.name || args.name.includes(":")) return fail("invalid_name");
        if (message.reactions.has(args.name)) return fail("already_reacted");
        message.reactions.add(args.name);
        return { body: { ok: true } };
      }
      default:
        return { status: 404, body: { ok: false, error: "unknown_method" } };
    }
  }

  private newTs(): string {
    return `${this.nextTs++}.000100`;
  }
}
