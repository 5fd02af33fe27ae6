import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A request as the fake Slack received it. */
export interface Received {
  method: string;
  /** The path under the API root, e.g. `/chat.postMessage`. */
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body (the raw text when it is not JSON). */
  body: unknown;
}

/** A scripted answer: a status, headers and JSON body, or a request left unanswered. */
export type Answer = { status?: number; headers?: Record<string, string>; body?: unknown } | "hang";

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
 * method (any status, headers, body, or no answer at all); unscripted requests get Slack's
 * behaviour over an in-memory workspace with one channel.
 */
export class FakeSlack {
  readonly received: Received[] = [];
  /** The token the workspace accepts; tests change it to check a rotated one. */
  token = TEST_TOKEN;
  readonly messages: Message[] = [];
  private readonly scripts = new Map<string, Answer[]>();
  private readonly hanging = new Set<ServerResponse>();
  private nextTs = 1_700_000_000;

  private constructor(
    private readonly server: Server,
    /** The API root, as SLACK_API_URL. */
    readonly url: string,
  ) {}

  static async start(): Promise<FakeSlack> {
    let fake: FakeSlack | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => fake!.handle(req.method ?? "", req.url ?? "", req.headers, Buffer.concat(chunks).toString("utf8"), res));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    fake = new FakeSlack(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`);
    return fake;
  }

  /** The next requests to `method` (e.g. `chat.postMessage`) get these answers, in order. */
  script(method: string, ...answers: Answer[]): void {
    this.scripts.set(method, [...(this.scripts.get(method) ?? []), ...answers]);
  }

  /** The requests made to one Web API method. */
  calls(method: string): Received[] {
    return this.received.filter((r) => r.path === `/${method}`);
  }

  /** A message in the workspace, as if posted earlier. */
  seed(text: string, channel = CHANNEL): string {
    const ts = this.newTs();
    this.messages.push({ channel, ts, text, reactions: new Set() });
    return ts;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(method: string, url: string, headers: IncomingHttpHeaders, raw: string, res: ServerResponse): void {
    const parsed = new URL(url, "http://fake");
    const path = parsed.pathname.replace(/^\/api/, "");
    let body: unknown = raw;
    try {
      body = raw === "" ? undefined : JSON.parse(raw);
    } catch {
      // Kept as text: Slack would not understand it either.
    }
    this.received.push({ method, path, query: parsed.search, headers, body });
    const scripted = this.scripts.get(path.slice(1))?.shift();
    if (scripted === "hang") {
      this.hanging.add(res);
      res.on("close", () => this.hanging.delete(res));
      return;
    }
    const answer = scripted ?? this.slack(method, path, headers, body);
    res.writeHead(answer.status ?? 200, { "content-type": "application/json; charset=utf-8", ...answer.headers });
    res.end(answer.body === undefined ? "" : JSON.stringify(answer.body));
  }

  /** What Slack answers. */
  private slack(method: string, path: string, headers: IncomingHttpHeaders, body: unknown): Exclude<Answer, "hang"> {
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
        this.messages.push({ channel, ts, text: args.text, ...(args.thread_ts && { threadTs: args.thread_ts }), reactions: new Set() });
        const message = { type: "message", user: "U0HOOKMESH", text: args.text, ts, ...(args.thread_ts && { thread_ts: args.thread_ts }) };
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
