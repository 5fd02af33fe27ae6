import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A request as a fake provider received it. */
export interface ReceivedRequest {
  method: string;
  /** The path under the API root (the fake's base path left out), without the query. */
  path: string;
  /** The path as received, base path included. */
  rawPath: string;
  /** The query string with its `?`, or "". */
  query: string;
  headers: IncomingHttpHeaders;
  /** The body as sent. */
  text: string;
  /** The body parsed as JSON; the text itself when it is not JSON; undefined when empty. */
  body: unknown;
  /** When it arrived (ms since the epoch). */
  at: number;
}

/** An answer: a status (200 unless given), headers, and a body (an object is sent as JSON, a string as it is). */
export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: unknown;
}

/**
 * A scripted answer: a reply; "hang", which never answers (until the fake closes); or a function
 * of the request, whose undefined leaves the request to the provider's own behaviour.
 */
export type Answer = Reply | "hang" | ((req: ReceivedRequest) => Reply | "hang" | undefined);

interface Script {
  /** `METHOD path` the answer is for; any request when undefined. */
  route?: string | RegExp;
  answer: Answer;
}

/**
 * The plumbing of a local stand-in for a provider's HTTP API: a real `node:http` server on
 * 127.0.0.1, port 0, that records every request, answers from scripts first (in order, for any
 * request or for one `METHOD path`) and then as the provider would. A subclass is the provider:
 * its behaviour (`respond`), the headers it always sends, and helpers for its resources.
 */
export abstract class FakeProvider {
  /** Every request, in order of arrival. */
  readonly received: ReceivedRequest[] = [];
  /** `http://127.0.0.1:{port}`. */
  origin = "";
  /** `127.0.0.1:{port}`. */
  host = "";
  private readonly scripts: Script[] = [];
  private readonly hanging = new Set<ServerResponse>();
  private readonly server = createServer((req, res) => void this.receive(req, res));

  /** `basePath`: where the API lives on the server, e.g. `/api` (part of `url`, left out of `path`). */
  constructor(private readonly basePath = "") {}

  /** A fake of this provider, started: `await FakeSlack.start()`. */
  static start<Fake extends FakeProvider, Args extends unknown[]>(
    this: new (
      ...args: Args
    ) => Fake,
    ...args: Args
  ): Promise<Fake> {
    return new this(...args).start();
  }

  /** The API root, as a service's API URL: the origin and the base path. */
  get url(): string {
    return this.origin + this.basePath;
  }

  /** Listens on 127.0.0.1, port 0. */
  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.host = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    this.origin = `http://${this.host}`;
    return this;
  }

  /** The next requests, whatever they are, get these answers in order, ahead of the provider's own behaviour. */
  answer(...answers: Answer[]): this {
    this.scripts.push(...answers.map((answer) => ({ answer })));
    return this;
  }

  /** The next requests to `route` (`"POST /chat.update"`, or a RegExp over `METHOD path`) get these answers in order. */
  answerTo(route: string | RegExp, ...answers: Answer[]): this {
    this.scripts.push(...answers.map((answer) => ({ route, answer })));
    return this;
  }

  /** Forgets the requests received and the answers not given yet; the provider's own state stays. */
  reset(): void {
    this.received.length = 0;
    this.scripts.length = 0;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The provider's own answer to a request no script answered. */
  protected abstract respond(req: ReceivedRequest): Reply;

  /** Headers the provider sends with every answer, scripted ones included (its rate-limit counters, say). */
  protected headers(): Record<string, string> {
    return {};
  }

  private async receive(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? "/", "http://fake");
    const text = Buffer.concat(chunks).toString("utf8");
    const received: ReceivedRequest = {
      method: req.method ?? "",
      path: url.pathname.startsWith(this.basePath) ? url.pathname.slice(this.basePath.length) : url.pathname,
      rawPath: url.pathname,
      query: url.search,
      headers: req.headers,
      text,
      body: parse(text),
      at: Date.now(),
    };
    this.received.push(received);
    const scripted = this.scripted(received);
    const reply = (typeof scripted === "function" ? scripted(received) : scripted) ?? this.respond(received);
    if (reply === "hang") {
      this.hanging.add(res);
      res.on("close", () => this.hanging.delete(res));
      return;
    }
    const body =
      reply.body === undefined ? "" : typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
    const contentType =
      typeof reply.body === "string" ? "text/plain; charset=utf-8" : "application/json; charset=utf-8";
    res.writeHead(reply.status ?? 200, {
      ...(body !== "" && { "content-type": contentType }),
      ...this.headers(),
      ...reply.headers,
    });
    res.end(body);
  }

  /** The first script for this request, taken off the list. */
  private scripted(req: ReceivedRequest): Answer | undefined {
    const line = `${req.method} ${req.path}`;
    const index = this.scripts.findIndex(
      ({ route }) => route === undefined || (typeof route === "string" ? route === line : route.test(line)),
    );
    return index === -1 ? undefined : this.scripts.splice(index, 1)[0]!.answer;
  }
}

function parse(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
