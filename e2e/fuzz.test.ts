/**
 * Fuzzing the webhook edge: thousands of random, hostile and mutated requests against the real
 * gateway (and the real tasks service behind it, on real Redis), over raw TCP so that framing
 * can be as broken as a client can make it.
 *
 * The oracle is independent of the gateway's code: for every request the test works out, from
 * the bytes it sent and the way Node presents them (lower-cased names, duplicates joined with
 * ", ", values trimmed), whether the request carries a valid signature under the provider's
 * documented scheme. Then:
 *   - the process never crashes: /healthz and /readyz answer 200 during the run and after it;
 *   - no 5xx at all (Redis and tasks are up, so not even a deliberate 503);
 *   - every 2xx on a webhook route is for a validly signed request (Slack's ssl_check
 *     included), and nothing over the size limit or with framing the HTTP spec says to refuse
 *     is accepted;
 *   - afterwards, every task (ListTasks) and every verified delivery in the gateway's log
 *     (DeliveryService) has a delivery id that only validly signed requests carried, and no
 *     delivery became two tasks; every clean, validly signed request was acknowledged and its
 *     delivery became a task;
 *   - no log line carries a secret or the signature a forged request should have had, and the
 *     delivery log keeps signature headers redacted.
 *
 *   FUZZ_SEED=123 FUZZ_COUNT=3000 npx vitest run gateway/test/fuzz.test.ts
 */
import { createHash, createHmac } from "node:crypto";
import * as net from "node:net";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { deflateSync, gzipSync } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  examplesOf,
  fixture,
  type Payload,
  type RunningGateway,
  startGateway,
  TEST_SECRETS,
} from "@hookmesh/gateway/testing";
import { createLogger } from "@hookmesh/kit";
import { type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import { CustomRouteSchema, HmacAlgorithm, SignedContent } from "../gen/hookmesh/gateway/v1/custom_route_pb.js";
import { type Delivery, DeliveryStatus } from "../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DeliveryService } from "../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import type { Task } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { get } from "./deliveries.js";

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const COUNT = Number(process.env.FUZZ_COUNT ?? 3000);
const CONCURRENCY = 24;
/** Small limits, so that bodies over them are cheap to send. */
const GITHUB_LIMIT = 64 * 1024;
const CUSTOM_LIMIT = 8 * 1024;
const LIMITS = {
  github: GITHUB_LIMIT,
  slack: 1024 * 1024,
  jira: 10 * 1024 * 1024,
  sentry: 4 * 1024 * 1024,
  custom: CUSTOM_LIMIT,
};

type Route = "github" | "slack" | "jira" | "sentry" | "custom";
const ROUTES: readonly Route[] = ["github", "slack", "jira", "sentry", "custom"];
const PATHS: Record<Route, string> = {
  github: "/webhooks/github",
  slack: "/webhooks/slack",
  jira: "/webhooks/jira",
  sentry: "/webhooks/sentry",
  custom: "/webhooks/custom/fuzz",
};
const PROVIDERS: Record<Route, Provider> = {
  github: Provider.GITHUB,
  slack: Provider.SLACK,
  jira: Provider.JIRA,
  sentry: Provider.SENTRY,
  custom: Provider.CUSTOM,
};
/** Rotation is configured for GitHub, Slack and the custom route: either secret signs. */
const SECRETS: Record<Route, readonly string[]> = {
  github: [TEST_SECRETS.github, "github-old-secret"],
  slack: [TEST_SECRETS.slack, "slack-old-secret"],
  jira: [TEST_SECRETS.jira],
  sentry: [TEST_SECRETS.sentry],
  custom: ["custom-fuzz-secret", "custom-fuzz-old-secret"],
};
const ALL_SECRETS = ROUTES.flatMap((r) => SECRETS[r]);
const SIG_HEADER: Record<Route, string> = {
  github: "X-Hub-Signature-256",
  slack: "X-Slack-Signature",
  jira: "X-Hub-Signature",
  sentry: "Sentry-Hook-Signature",
  custom: "X-Fuzz-Signature",
};
const TS_HEADER: Partial<Record<Route, string>> = { slack: "X-Slack-Request-Timestamp", custom: "X-Fuzz-Timestamp" };
const WRONG_SECRETS = [
  "wrong-secret",
  "",
  "github-test-secret ",
  "github-test-secre",
  "GITHUB-TEST-SECRET",
  ...ALL_SECRETS,
];

// ---------------------------------------------------------------------------------------------
// Seeded randomness

class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    // mulberry32
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  weighted<T>(choices: readonly [number, T][]): T {
    const total = choices.reduce((sum, [w]) => sum + w, 0);
    let x = this.next() * total;
    for (const [w, value] of choices) {
      if ((x -= w) < 0) return value;
    }
    return choices.at(-1)![1];
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
  /** Bytes 0x80-0xff: not ASCII, not valid UTF-8 on their own. */
  high(n: number): Buffer {
    const out = this.bytes(n);
    for (let i = 0; i < n; i++) out[i] = 0x80 | out[i]!;
    return out;
  }
  ascii(n: number, alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+/ .,:;"): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }
  hex(n: number): string {
    return this.ascii(n, "0123456789abcdef");
  }
}

/** Large filler without paying for a PRNG call per byte. */
function filler(rng: Rng, size: number): Buffer {
  const block = rng.bytes(4096);
  const out = Buffer.allocUnsafe(size);
  for (let at = 0; at < size; at += block.length) block.copy(out, at, 0, Math.min(block.length, size - at));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Signing, as the providers document it (independent of the gateway's verifiers)

function hmacHex(secret: string, ...parts: (string | Buffer)[]): string {
  const mac = createHmac("sha256", secret);
  for (const part of parts) mac.update(part);
  return mac.digest("hex");
}

function signatureFor(route: Route, body: Buffer, secret: string, timestamp?: string): string {
  switch (route) {
    case "github":
    case "jira":
      return `sha256=${hmacHex(secret, body)}`;
    case "sentry":
      return hmacHex(secret, body);
    case "slack":
      return `v0=${hmacHex(secret, `v0:${timestamp}:`, body)}`;
    case "custom":
      return `sha256=${hmacHex(secret, `${timestamp}.`, body)}`;
  }
}

const sha256 = (body: Buffer) => createHash("sha256").update(body).digest("hex");

// ---------------------------------------------------------------------------------------------
// Requests

type HeaderValue = string | Buffer;
type Header = [name: string, value: HeaderValue];
type Intent = "valid" | "forged" | "noise";

/** A request before framing: what a sender means to send. */
interface Draft {
  kind: string;
  intent: Intent;
  route?: Route;
  method: string;
  target: string;
  headers: Header[];
  body: Buffer;
  /** The delivery id the gateway should derive from a valid draft of an event. */
  primaryId?: string;
  /** Produces an event (a task), as opposed to an answered ping / challenge / ssl_check. */
  event: boolean;
  mustReject?: string;
  /** The request line's version; HTTP/1.1 unless set. */
  version?: string;
}

/** A request on the wire, with what the test expects of it. */
interface Spec extends Draft {
  n: number;
  /** The bytes after the header block: the body as framed, or garbage. */
  payload: Buffer;
  /** The body the server reads if it accepts the framing; undefined if it cannot have one. */
  effectiveBody?: Buffer;
  /** A clean, validly signed request: it must be acknowledged (2xx). */
  control: boolean;
  status?: number;
  responseBody?: string;
  responseHeaders?: Record<string, string>;
}

interface Session {
  specs: Spec[];
  /** Stop writing after this many bytes and drop the connection (a client going away). */
  closeAfter?: number;
  /** Half-close after writing (no more bytes will come). */
  halfClose?: boolean;
  /** Pause between the first `slowSplit` bytes and the rest. */
  slowSplit?: number;
  /** Every request in it is well-formed: no answer within the timeout is a hang. */
  expectAnswers: boolean;
  timeoutMs: number;
  timedOut?: boolean;
}

function headerIndex(headers: Header[], name: string): number {
  return headers.findIndex(([n]) => n.toLowerCase() === name.toLowerCase());
}

function getHeader(headers: Header[], name: string): string | undefined {
  const i = headerIndex(headers, name);
  return i < 0 ? undefined : String(headers[i]![1]);
}

function setHeader(headers: Header[], name: string, value: HeaderValue): Header[] {
  const i = headerIndex(headers, name);
  const rest = headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase());
  if (i < 0) return [...rest, [name, value]];
  rest.splice(Math.min(i, rest.length), 0, [name, value]);
  return rest;
}

function removeHeader(headers: Header[], name: string): Header[] {
  return headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase());
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

// ---------------------------------------------------------------------------------------------
// Valid drafts: real payloads, signed the providers' way

const GITHUB_POOL: { event: string; body: Buffer }[] = [
  ...[
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review_comment",
    "push",
    "discussion_comment",
    "check_run",
  ].flatMap((event) =>
    examplesOf(event)
      .slice(0, 6)
      .map((p: Payload) => ({ event, body: json(p) }))
      .filter(({ body }) => body.length < GITHUB_LIMIT - 1024),
  ),
];
const GITHUB_PINGS = examplesOf("ping").map((p) => json(p));
const fixtureJson = (name: string) => JSON.parse(fixture(name).toString("utf8")) as Record<string, unknown>;
const SLACK_EVENTS = [fixtureJson("slack-app-mention.json"), fixtureJson("slack-message-thread.json")];
const SLACK_SLASH = fixtureJson("slack-slash-command.json") as Record<string, string>;
const SLACK_ACTIONS = fixtureJson("slack-block-actions.json");
const JIRA_EVENTS = [fixtureJson("jira-comment-created.json"), fixtureJson("jira-issue-updated.json")];
const SENTRY_EVENTS: [string, Record<string, unknown>][] = [
  ["issue", fixtureJson("sentry-issue-created.json")],
  ["comment", fixtureJson("sentry-comment-created.json")],
];

const nowSeconds = () => Math.floor(Date.now() / 1000);

function validDraft(rng: Rng, route: Route, id: string): Draft {
  const secret = rng.pick(SECRETS[route]);
  const base = { intent: "valid" as const, route, method: "POST", target: PATHS[route], event: true };
  switch (route) {
    case "github": {
      if (rng.chance(0.04)) {
        const body = rng.pick(GITHUB_PINGS);
        return {
          ...base,
          kind: "github:ping",
          event: false,
          body,
          headers: [
            ["Content-Type", "application/json"],
            ["X-GitHub-Event", "ping"],
            ["X-GitHub-Delivery", id],
            ["X-GitHub-Hook-ID", "4242"],
            ["X-Hub-Signature-256", signatureFor("github", body, secret)],
          ],
        };
      }
      const { event, body: pooled } = rng.pick(GITHUB_POOL);
      // Each delivery its own event: the same signed body under another delivery id is a replay.
      const jsonBody = json({ ...(JSON.parse(pooled.toString()) as object), fuzz: id });
      const form = rng.chance(0.1);
      const body = form ? Buffer.from(`payload=${encodeURIComponent(jsonBody.toString())}`) : jsonBody;
      return {
        ...base,
        kind: form ? "github:form" : "github:json",
        body,
        primaryId: id,
        headers: [
          ["User-Agent", "GitHub-Hookshot/fuzz"],
          ["Content-Type", form ? "application/x-www-form-urlencoded" : "application/json"],
          ["X-GitHub-Event", event],
          ["X-GitHub-Delivery", id],
          ["X-GitHub-Hook-ID", "4242"],
          ["X-GitHub-Hook-Installation-Target-Type", "repository"],
          ["X-Hub-Signature-256", signatureFor("github", body, secret)],
        ],
      };
    }
    case "slack": {
      const ts = String(nowSeconds() + rng.int(-60, 60));
      const variant = rng.weighted<string>([
        [50, "event"],
        [8, "url_verification"],
        [20, "slash"],
        [15, "interactivity"],
        [5, "ssl_check"],
      ]);
      let body: Buffer;
      let contentType = "application/json";
      let primaryId: string | undefined;
      let event = true;
      if (variant === "event") {
        body = json({ ...rng.pick(SLACK_EVENTS), event_id: id, event_time: nowSeconds() });
        primaryId = id;
      } else if (variant === "url_verification") {
        body = json({ token: "Jhj5dZrVaK7ZwHHjRyZWjbDl", challenge: `challenge-${id}`, type: "url_verification" });
        event = false;
      } else if (variant === "slash") {
        body = Buffer.from(
          new URLSearchParams({ ...SLACK_SLASH, text: `fix it ${id} Grüße`, trigger_id: id }).toString(),
        );
        contentType = "application/x-www-form-urlencoded";
        primaryId = `sha256:${sha256(body)}`;
      } else if (variant === "interactivity") {
        body = Buffer.from(
          new URLSearchParams({ payload: JSON.stringify({ ...SLACK_ACTIONS, trigger_id: id }) }).toString(),
        );
        contentType = "application/x-www-form-urlencoded";
        primaryId = `sha256:${sha256(body)}`;
      } else {
        // Slack's certificate check: signed like every Slack request, answered, never an event.
        body = Buffer.from(`ssl_check=1&token=${id}`);
        contentType = "application/x-www-form-urlencoded";
        event = false;
      }
      const headers: Header[] = [
        ["Content-Type", contentType],
        ["X-Slack-Request-Timestamp", ts],
        ["X-Slack-Signature", signatureFor("slack", body, secret, ts)],
      ];
      if (rng.chance(0.05)) headers.push(["X-Slack-Retry-Num", "1"], ["X-Slack-Retry-Reason", "http_timeout"]);
      return { ...base, kind: `slack:${variant}`, event, body, primaryId, headers };
    }
    case "jira": {
      const body = json({ ...rng.pick(JIRA_EVENTS), timestamp: Date.now(), fuzz: id });
      const withId = rng.chance(0.8);
      return {
        ...base,
        kind: "jira",
        body,
        primaryId: withId ? id : `sha256:${sha256(body)}`,
        headers: [
          ["Content-Type", "application/json; charset=utf-8"],
          ...(withId ? ([["X-Atlassian-Webhook-Identifier", id]] as Header[]) : []),
          ["X-Hub-Signature", signatureFor("jira", body, secret)],
        ],
      };
    }
    case "sentry": {
      const [resource, payload] = rng.pick(SENTRY_EVENTS);
      const body = json({ ...payload, fuzz: id });
      const withId = rng.chance(0.8);
      return {
        ...base,
        kind: `sentry:${resource}`,
        body,
        primaryId: withId ? id : `sha256:${sha256(body)}`,
        headers: [
          ["Content-Type", "application/json"],
          ["Sentry-Hook-Resource", resource],
          ["Sentry-Hook-Timestamp", String(nowSeconds())],
          ...(withId ? ([["Request-ID", id]] as Header[]) : []),
          ["Sentry-Hook-Signature", signatureFor("sentry", body, secret)],
        ],
      };
    }
    case "custom": {
      const ts = String(nowSeconds() + rng.int(-60, 60));
      const plain = rng.chance(0.2);
      const body = plain
        ? Buffer.from(`plain text ${id} Grüße 日本語`)
        : json({ text: `@hookmesh fuzz ${id} 👋`, n: rng.int(0, 1e9) });
      const withId = rng.chance(0.8);
      return {
        ...base,
        kind: plain ? "custom:text" : "custom:json",
        body,
        primaryId: withId ? id : `sha256:${sha256(body)}`,
        headers: [
          ["Content-Type", plain ? "text/plain; charset=utf-8" : "application/json"],
          ["X-Fuzz-Timestamp", ts],
          ["X-Fuzz-Event", "fuzz.happened"],
          ...(withId ? ([["X-Fuzz-Delivery", id]] as Header[]) : []),
          ["X-Fuzz-Signature", signatureFor("custom", body, secret, ts)],
        ],
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations of a valid draft, after signing

type Mutation = (rng: Rng, d: Draft) => Draft;

function resign(d: Draft, body: Buffer, secret: string, timestamp?: string): Header[] {
  return setHeader(
    d.headers,
    SIG_HEADER[d.route!],
    signatureFor(d.route!, body, secret, timestamp ?? getHeader(d.headers, TS_HEADER[d.route!] ?? "")),
  );
}

const forged = (d: Draft, kind: string, change: Partial<Draft>): Draft => ({
  ...d,
  ...change,
  kind: `${d.kind}>${kind}`,
  intent: "forged",
  primaryId: undefined,
});
const stillSigned = (d: Draft, kind: string, change: Partial<Draft>): Draft => ({
  ...d,
  ...change,
  kind: `${d.kind}>${kind}`,
});

const BODY_MUTATIONS: Record<string, Mutation> = {
  flipBit(rng, d) {
    const body = Buffer.from(d.body);
    if (body.length === 0) return forged(d, "flipBit", { body: Buffer.from(" ") });
    body[rng.int(0, body.length - 1)]! ^= 1 << rng.int(0, 7);
    return forged(d, "flipBit", { body });
  },
  appendByte(rng, d) {
    return forged(d, "appendByte", {
      body: Buffer.concat([d.body, Buffer.from(rng.pick(["\n", " ", "\0", "}", "\r\n", "x"]))]),
    });
  },
  prependSpace(_rng, d) {
    return forged(d, "prependSpace", { body: Buffer.concat([Buffer.from(" "), d.body]) });
  },
  truncate(rng, d) {
    return forged(d, "truncate", { body: d.body.subarray(0, rng.int(0, Math.max(0, d.body.length - 1))) });
  },
  reserialize(rng, d) {
    try {
      const parsed = JSON.parse(d.body.toString("utf8")) as unknown;
      return forged(d, "reserialize", { body: Buffer.from(JSON.stringify(parsed, null, rng.pick([1, 2, "\t"]))) });
    } catch {
      return forged(d, "reserialize", { body: Buffer.from(d.body.toString("utf8").replace(/=/g, "= ")) });
    }
  },
  escapeUnicode(_rng, d) {
    // Same JSON value, other bytes: a re-serializing verifier would wrongly accept it.
    const escaped = d.body
      .toString("utf8")
      .replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    const body = Buffer.from(escaped === d.body.toString("utf8") ? `${escaped} ` : escaped);
    return forged(d, "escapeUnicode", { body });
  },
  changeAction(_rng, d) {
    const text = d.body.toString("utf8");
    const at = text.lastIndexOf("}");
    return forged(d, "changeAction", {
      body: Buffer.from(at > 0 ? `${text.slice(0, at)},"action":"deleted"}` : `${text}&action=deleted`),
    });
  },
  otherBody(rng, d) {
    return forged(d, "otherBody", { body: json({ action: "created", text: `@hookmesh rm -rf ${rng.hex(8)}` }) });
  },
  emptyBody(_rng, d) {
    return forged(d, "emptyBody", { body: Buffer.alloc(0) });
  },
  gzip(rng, d) {
    // Compressed after signing: the bytes differ from what was signed.
    const body = rng.chance(0.5) ? gzipSync(d.body) : deflateSync(d.body);
    return forged(d, "gzip", { body, headers: [...d.headers, ["Content-Encoding", rng.pick(["gzip", "deflate"])]] });
  },
};

const SIGNATURE_MUTATIONS: Record<string, Mutation> = {
  hexFlip(rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!]) ?? "";
    const hexStart = value.length - 64;
    const at = hexStart + rng.int(0, 63);
    const old = value[at] ?? "0";
    const replacement = "0123456789abcdef".replace(old, "")[rng.int(0, 14)]!;
    return forged(d, "hexFlip", {
      headers: setHeader(d.headers, SIG_HEADER[d.route!], value.slice(0, at) + replacement + value.slice(at + 1)),
    });
  },
  sigTruncate(rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!]) ?? "";
    return forged(d, "sigTruncate", {
      headers: setHeader(d.headers, SIG_HEADER[d.route!], value.slice(0, value.length - rng.int(1, 40))),
    });
  },
  sigExtend(rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!]) ?? "";
    return forged(d, "sigExtend", {
      headers: setHeader(d.headers, SIG_HEADER[d.route!], value + rng.pick(["0", "00", "ff", "g", "=", " x"])),
    });
  },
  wrongSecret(rng, d) {
    const secret = rng.pick(WRONG_SECRETS.filter((s) => !SECRETS[d.route!].includes(s)));
    return forged(d, "wrongSecret", { headers: resign(d, d.body, secret) });
  },
  otherScheme(rng, d) {
    const secret = SECRETS[d.route!][0]!;
    const ts = getHeader(d.headers, TS_HEADER[d.route!] ?? "") ?? "";
    const body = d.body;
    const value = rng.pick([
      `sha1=${createHmac("sha1", secret).update(body).digest("hex")}`,
      `sha512=${createHmac("sha512", secret).update(body).digest("hex")}`,
      `sha256=${createHash("sha256").update(body).digest("hex")}`, // a plain digest, no secret
      `sha256=${hmacHex(secret, `v0:${ts}:`, body)}`,
      `v0=${hmacHex(secret, body)}`, // Slack's format without the timestamp
      `v0=${hmacHex(secret, `${ts}.`, body)}`,
      `sha256=${hmacHex(secret, `${ts}:`, body)}`,
      `sha256=${hmacHex(secret, body)}`, // the custom route's format without its timestamp
      hmacHex(secret, `${ts}.`, body),
      `sha256=${createHmac("sha256", secret).update(body).digest("base64")}`,
    ]);
    return forged(d, "otherScheme", { headers: setHeader(d.headers, SIG_HEADER[d.route!], value) });
  },
  sigMissing(_rng, d) {
    return forged(d, "sigMissing", { headers: removeHeader(d.headers, SIG_HEADER[d.route!]) });
  },
  sigEmpty(rng, d) {
    return forged(d, "sigEmpty", {
      headers: setHeader(d.headers, SIG_HEADER[d.route!], rng.pick(["", " ", "sha256=", "v0=", "\t"])),
    });
  },
  sigDuplicated(rng, d) {
    // Node joins repeated headers with ", ": neither copy may then count on its own.
    const name = SIG_HEADER[d.route!];
    const value = getHeader(d.headers, name)!;
    const other = rng.pick([value, `sha256=${rng.hex(64)}`, "", rng.hex(64)]);
    const headers: Header[] = rng.chance(0.5)
      ? [...d.headers, [name.toLowerCase(), other]]
      : [[name, other], ...d.headers];
    return forged(d, "sigDuplicated", { headers });
  },
  sigRenamed(rng, d) {
    const name = SIG_HEADER[d.route!];
    const value = getHeader(d.headers, name)!;
    const other = rng.pick([
      "X-Hub-Signature",
      "X-Hub-Signature-256",
      "X-Slack-Signature",
      "Sentry-Hook-Signature",
      "X-Fuzz-Signature",
      "X-Signature",
      "Signature",
    ]);
    if (other.toLowerCase() === name.toLowerCase())
      return forged(d, "sigRenamed", { headers: removeHeader(d.headers, name) });
    return forged(d, "sigRenamed", { headers: [...removeHeader(d.headers, name), [other, value]] });
  },
  sigGarbage(rng, d) {
    const value = rng.weighted<() => HeaderValue>([
      [3, () => rng.ascii(rng.int(1, 100))],
      [3, () => `sha256=${rng.hex(64)}`],
      [2, () => `v0=${rng.hex(64)}`],
      [2, () => rng.hex(64)],
      [1, () => `sha256=${"0".repeat(64)}`],
      [1, () => `sha256=${rng.ascii(64, "ghijklmnopqrstuvwxyz")}`],
      [1, () => `sha256=${rng.hex(63)}Z`],
      [1, () => Buffer.concat([Buffer.from("sha256="), rng.high(64)])],
      [1, () => `sha256=${"a".repeat(rng.int(1000, 6000))}`],
      [1, () => Buffer.from(`sha256=${"é".repeat(32)}`)],
    ])();
    return forged(d, "sigGarbage", { headers: setHeader(d.headers, SIG_HEADER[d.route!], value) });
  },
  sigInnerSpace(_rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!])!;
    const at = value.indexOf("=") + 1;
    return forged(d, "sigInnerSpace", {
      headers: setHeader(d.headers, SIG_HEADER[d.route!], `${value.slice(0, at)} ${value.slice(at)}`),
    });
  },
};

/** Changes to the signature header that keep the HMAC valid: may be accepted. */
const HARMLESS_SIGNATURE_CHANGES: Record<string, Mutation> = {
  sigUpperHex(_rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!])!;
    return stillSigned(d, "sigUpperHex", {
      headers: setHeader(
        d.headers,
        SIG_HEADER[d.route!],
        value.replace(/[0-9a-f]{64}$/, (h) => h.toUpperCase()),
      ),
    });
  },
  sigUpperPrefix(_rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!])!;
    return stillSigned(d, "sigUpperPrefix", {
      headers: setHeader(
        d.headers,
        SIG_HEADER[d.route!],
        value.replace(/^[a-z0-9]+=/, (p) => p.toUpperCase()),
      ),
    });
  },
  sigPadded(rng, d) {
    const value = getHeader(d.headers, SIG_HEADER[d.route!])!;
    return stillSigned(d, "sigPadded", {
      headers: setHeader(
        d.headers,
        SIG_HEADER[d.route!],
        `${rng.pick([" ", "\t", "  "])}${value}${rng.pick([" ", "\t", ""])}`,
      ),
    });
  },
  headerNameCase(rng, d) {
    const headers = d.headers.map(([n, v]): Header => [rng.pick([n.toLowerCase(), n.toUpperCase(), n]), v]);
    return stillSigned(d, "headerNameCase", { headers });
  },
};

/** Changes to a header the scheme signs (a timestamp): the signature no longer matches. */
const SIGNED_HEADER_MUTATIONS: Record<string, Mutation> = {
  tsShift(rng, d) {
    const name = TS_HEADER[d.route!]!;
    const ts = Number(getHeader(d.headers, name));
    return forged(d, "tsShift", { headers: setHeader(d.headers, name, String(ts + rng.pick([-1, 1, 2, -30, 100]))) });
  },
  tsStale(rng, d) {
    // Correctly signed, but too old (or too far ahead): a replay.
    const ts = String(nowSeconds() + rng.pick([-1, 1]) * rng.int(400, 10_000_000));
    const name = TS_HEADER[d.route!]!;
    const headers = setHeader(d.headers, name, ts);
    return forged(d, "tsStale", {
      headers: setHeader(headers, SIG_HEADER[d.route!], signatureFor(d.route!, d.body, SECRETS[d.route!][0]!, ts)),
    });
  },
  tsOdd(rng, d) {
    // Signed over an odd spelling of the time: the check on the header must not be looser than the digits.
    const now = nowSeconds();
    const ts = rng.pick([
      `${now}.0`,
      `+${now}`,
      `0x${now.toString(16)}`,
      `${now}e0`,
      ` ${now}`,
      `-${now}`,
      "",
      `${now}${" "}x`,
    ]);
    const name = TS_HEADER[d.route!]!;
    const headers = setHeader(d.headers, name, ts);
    return forged(d, "tsOdd", {
      headers: setHeader(headers, SIG_HEADER[d.route!], signatureFor(d.route!, d.body, SECRETS[d.route!][0]!, ts)),
    });
  },
  tsMissing(_rng, d) {
    return forged(d, "tsMissing", { headers: removeHeader(d.headers, TS_HEADER[d.route!]!) });
  },
  tsDuplicated(_rng, d) {
    const name = TS_HEADER[d.route!]!;
    return forged(d, "tsDuplicated", { headers: [...d.headers, [name, getHeader(d.headers, name)!]] });
  },
};

/** Changes to headers no scheme signs: still validly signed (GitHub signs only the body). */
const UNSIGNED_HEADER_CHANGES: Record<string, Mutation> = {
  otherEvent(rng, d) {
    const name = {
      github: "X-GitHub-Event",
      slack: "X-Slack-Retry-Num",
      jira: "X-Atlassian-Webhook-Flow",
      sentry: "Sentry-Hook-Resource",
      custom: "X-Fuzz-Event",
    }[d.route!];
    return stillSigned(d, "otherEvent", {
      headers: setHeader(
        d.headers,
        name,
        rng.pick(["issues", "ping", "installation", "", "../../etc", "issue", "x".repeat(300)]),
      ),
      primaryId: undefined,
    });
  },
  dropEvent(_rng, d) {
    return stillSigned(d, "dropEvent", {
      headers: removeHeader(removeHeader(d.headers, "X-GitHub-Event"), "Sentry-Hook-Resource"),
      primaryId: undefined,
    });
  },
  otherContentType(rng, d) {
    const ct = rng.pick([
      "text/plain",
      "application/xml",
      "multipart/form-data; boundary=x",
      "APPLICATION/JSON; charset=UTF-8",
      "application/json;;;",
      "application/x-www-form-urlencoded",
      "",
      "application/jsonx",
      "*/*",
    ]);
    return stillSigned(d, "otherContentType", {
      headers: setHeader(d.headers, "Content-Type", ct),
      primaryId: undefined,
    });
  },
};

/** Other encodings of the body, signed as sent: valid signatures over bytes the gateway cannot read (400), or can. */
const SIGNED_ENCODINGS: Record<string, Mutation> = {
  gzipSigned(_rng, d) {
    const body = gzipSync(d.body);
    return stillSigned(d, "gzipSigned", {
      body,
      headers: [...resign(d, body, SECRETS[d.route!][0]!), ["Content-Encoding", "gzip"]],
      primaryId: undefined,
    });
  },
  utf16Signed(_rng, d) {
    const body = Buffer.from(`\ufeff${d.body.toString("utf8")}`, "utf16le");
    return stillSigned(d, "utf16Signed", {
      body,
      headers: setHeader(resign(d, body, SECRETS[d.route!][0]!), "Content-Type", "application/json; charset=utf-16"),
      primaryId: undefined,
    });
  },
  bomSigned(_rng, d) {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), d.body]);
    return stillSigned(d, "bomSigned", { body, headers: resign(d, body, SECRETS[d.route!][0]!), primaryId: undefined });
  },
  latin1Signed(_rng, d) {
    // Non-ASCII text as single bytes: not UTF-8.
    const body = Buffer.from(d.body.toString("utf8"), "latin1");
    return stillSigned(d, "latin1Signed", {
      body,
      headers: setHeader(
        resign(d, body, SECRETS[d.route!][0]!),
        "Content-Type",
        "application/json; charset=iso-8859-1",
      ),
      primaryId: undefined,
    });
  },
  emptySigned(_rng, d) {
    const body = Buffer.alloc(0);
    return stillSigned(d, "emptySigned", {
      body,
      headers: resign(d, body, SECRETS[d.route!][0]!),
      primaryId: undefined,
    });
  },
  binarySigned(rng, d) {
    const body = rng.bytes(rng.int(1, 4096));
    return stillSigned(d, "binarySigned", {
      body,
      headers: resign(d, body, SECRETS[d.route!][0]!),
      primaryId: undefined,
    });
  },
};

// ---------------------------------------------------------------------------------------------
// Noise: random methods, paths, headers and bodies

const METHODS = [
  "GET",
  "POST",
  "PUT",
  "DELETE",
  "PATCH",
  "OPTIONS",
  "HEAD",
  "TRACE",
  "post",
  "P0ST",
  "FOO",
  "PROPFIND",
  "M-SEARCH",
  "PURGE",
];
const NOISE_PATHS = [
  "/",
  "/healthz",
  "/readyz",
  "/healthz?verbose=1",
  "/webhooks",
  "/webhooks/",
  "/webhooks//github",
  "/webhooks/github/",
  "/webhooks/GitHub",
  "/webhooks/github/extra",
  "/webhooks/%67ithub",
  "/webhooks/github?x=1&y=%ZZ",
  "/webhooks/custom/",
  "/webhooks/custom/x",
  "/webhooks/custom/FUZZ",
  "/webhooks/custom/fuzz/../x",
  "/webhooks/custom/%2e%2e/github",
  `/webhooks/custom/${"a".repeat(70)}`,
  "/webhooks/%",
  "/webhooks/%E0%A4%A",
  "/webhooks/%00",
  "/webhooks/%ff",
  "/webhooks/..%2fhealthz",
  "/webhooks/__proto__",
  "/webhooks/constructor",
  "/webhooks/hasOwnProperty",
  "/webhooks/custom/__proto__",
  "/webhooks/jira%2F..",
  "*",
  "http://[::1/webhooks/github",
  "http://[",
  "http://evil.example/webhooks/sentry",
  "//webhooks/github",
  "/webhooks/github%20",
  "/webhooks/ü",
  `/webhooks/${"%41".repeat(2000)}`,
  `/${"x".repeat(9000)}`,
  "/webhooks/slack#frag",
];
const CONTENT_TYPES = [
  "application/json",
  "application/x-www-form-urlencoded",
  "text/plain",
  "application/octet-stream",
  "multipart/form-data; boundary=----x",
  "application/json; charset=utf-16",
  "application/xml",
  "",
  "application/json\u00ff",
  "; ;",
  "application/json, text/plain",
];

function randomHeaderValue(rng: Rng): HeaderValue {
  return rng.weighted<() => HeaderValue>([
    [5, () => rng.ascii(rng.int(0, 64))],
    [2, () => Buffer.from(`Grüße 👋 日本語 ${rng.ascii(8)}`)],
    [1, () => rng.high(rng.int(1, 32))],
    [1, () => Buffer.from([rng.pick([0x00, 0x01, 0x0d, 0x0a, 0x7f, 0x1b])])],
    [1, () => "x".repeat(rng.int(100, 9000))],
    [1, () => `sha256=${rng.hex(64)}`],
  ])();
}

const RANDOM_HEADER_NAMES = [
  "X-Hub-Signature-256",
  "X-Hub-Signature",
  "X-Slack-Signature",
  "X-Slack-Request-Timestamp",
  "Sentry-Hook-Signature",
  "Sentry-Hook-Resource",
  "X-GitHub-Event",
  "X-GitHub-Delivery",
  "X-Atlassian-Webhook-Identifier",
  "Request-ID",
  "X-Fuzz-Signature",
  "X-Fuzz-Timestamp",
  "Content-Type",
  "Content-Encoding",
  "Accept",
  "Traceparent",
  "Tracestate",
  "X-Forwarded-For",
  "Expect",
  "Cookie",
  "Authorization",
  "X-Random",
];

function noiseDraft(rng: Rng, id: string): Draft {
  const headers: Header[] = [];
  for (let i = rng.int(0, 8); i > 0; i--) headers.push([rng.pick(RANDOM_HEADER_NAMES), randomHeaderValue(rng)]);
  if (rng.chance(0.7)) headers.push(["Content-Type", rng.pick(CONTENT_TYPES)]);
  const body = rng.weighted<() => Buffer>([
    [4, () => Buffer.alloc(0)],
    [4, () => rng.bytes(rng.int(1, 2048))],
    [3, () => json({ action: "opened", id, text: "@hookmesh" })],
    [2, () => Buffer.from(`payload=${encodeURIComponent(JSON.stringify({ id }))}`)],
    [1, () => filler(rng, rng.int(10_000, 200_000))],
    [1, () => Buffer.from("{".repeat(rng.int(1000, 50_000)))],
    [1, () => Buffer.from(`[${"1,".repeat(10_000)}1]`)],
  ])();
  const target = rng.chance(0.5) ? rng.pick(NOISE_PATHS) : rng.pick([...Object.values(PATHS), "/webhooks/custom/x"]);
  return { kind: "noise", intent: "noise", method: rng.pick(METHODS), target, headers, body, event: false };
}

// ---------------------------------------------------------------------------------------------
// Framing: how the draft goes on the wire

type Framing =
  | "length"
  | "chunked"
  | "none"
  | "cl-short"
  | "cl-long"
  | "truncate"
  | "te-cl"
  | "bad-chunk"
  | "chunked-truncate"
  | "cl-bogus"
  | "cl-dup";

function chunked(rng: Rng, body: Buffer, extensions: boolean): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const size = Math.min(body.length - at, rng.int(1, Math.max(1, Math.ceil(body.length / rng.int(1, 6)))));
    const ext = extensions && rng.chance(0.3) ? `;name=${rng.ascii(3, "abc")}` : "";
    parts.push(Buffer.from(`${size.toString(16)}${ext}\r\n`), body.subarray(at, at + size), Buffer.from("\r\n"));
    at += size;
  }
  parts.push(Buffer.from(extensions && rng.chance(0.3) ? "0\r\nX-Trailer: 1\r\n\r\n" : "0\r\n\r\n"));
  return Buffer.concat(parts);
}

interface Framed {
  headers: Header[];
  payload: Buffer;
  effectiveBody?: Buffer;
  mustReject?: string;
  closeAfterPayload?: number;
  halfClose?: boolean;
}

function frame(rng: Rng, body: Buffer, framing: Framing): Framed {
  const cl = (n: number | string): Header => ["Content-Length", String(n)];
  switch (framing) {
    case "length":
      return { headers: [cl(body.length)], payload: body, effectiveBody: body };
    case "chunked":
      return { headers: [["Transfer-Encoding", "chunked"]], payload: chunked(rng, body, true), effectiveBody: body };
    case "none":
      // A POST without Content-Length or Transfer-Encoding has an empty body; what follows is
      // parsed as the next request.
      return { headers: [], payload: body, effectiveBody: Buffer.alloc(0) };
    case "cl-short": {
      const n = rng.int(0, Math.max(0, body.length - 1));
      return { headers: [cl(n)], payload: body, effectiveBody: body.subarray(0, n) };
    }
    case "cl-long":
      return { headers: [cl(body.length + rng.int(1, 10_000))], payload: body, halfClose: rng.chance(0.5) };
    case "truncate":
      return { headers: [cl(body.length)], payload: body, closeAfterPayload: rng.int(0, Math.max(0, body.length - 1)) };
    case "te-cl":
      return {
        headers: [cl(body.length), ["Transfer-Encoding", "chunked"]],
        payload: chunked(rng, body, false),
        effectiveBody: body,
        mustReject: "Content-Length with Transfer-Encoding",
      };
    case "bad-chunk": {
      const bad = rng.pick([
        Buffer.concat([Buffer.from("zz\r\n"), body, Buffer.from("\r\n0\r\n\r\n")]),
        Buffer.concat([Buffer.from(`${(body.length + 5).toString(16)}\r\n`), body, Buffer.from("\r\n0\r\n\r\n")]),
        Buffer.concat([Buffer.from(`-${body.length.toString(16)}\r\n`), body, Buffer.from("\r\n0\r\n\r\n")]),
        Buffer.concat([Buffer.from(`${body.length.toString(16)}\n`), body, Buffer.from("\n0\n\n")]),
        Buffer.concat([Buffer.from(`${"f".repeat(20)}\r\n`), body]),
      ]);
      return {
        headers: [["Transfer-Encoding", rng.pick(["chunked", "Chunked", "gzip, chunked"])]],
        payload: bad,
        mustReject: "malformed chunked body",
        halfClose: true,
      };
    }
    case "chunked-truncate": {
      const payload = chunked(rng, body, false);
      return {
        headers: [["Transfer-Encoding", "chunked"]],
        payload,
        closeAfterPayload: rng.int(0, payload.length - 6),
      };
    }
    case "cl-bogus":
      return {
        headers: [
          cl(
            rng.pick([
              "-1",
              "abc",
              "1e3",
              `${body.length}, ${body.length + 1}`,
              `+${body.length}`,
              "0x10",
              "99999999999999999999",
              `${body.length}\u00a0`,
            ]),
          ),
        ],
        payload: body,
        mustReject: "invalid Content-Length",
        halfClose: true,
      };
    case "cl-dup":
      // Repeated identical values may be taken as one (RFC 9110 8.6); differing ones never.
      if (rng.chance(0.5))
        return { headers: [cl(body.length), cl(body.length)], payload: body, effectiveBody: body, halfClose: true };
      return {
        headers: [cl(body.length), cl(body.length + 1)],
        payload: body,
        mustReject: "differing Content-Length values",
        halfClose: true,
      };
  }
}

// ---------------------------------------------------------------------------------------------
// Generating the run

interface Generated {
  sessions: Session[];
  specs: Spec[];
}

function generate(seed: number, count: number): Generated {
  const rng = new Rng(seed);
  const specs: Spec[] = [];
  const sessions: Session[] = [];
  const controls: Spec[] = [];
  let n = 0;
  const id = () => `fz${seed}-${n}`;

  const spec = (draft: Draft, framed: Framed, control: boolean, extra: Header[] = []): Spec => {
    const host: Header[] =
      headerIndex(draft.headers, "host") >= 0 || (draft.intent === "noise" && rng.chance(0.1))
        ? []
        : [["Host", "gateway.test"]];
    const s: Spec = {
      ...draft,
      mustReject: draft.mustReject ?? framed.mustReject,
      n: n++,
      headers: [...host, ...draft.headers, ...framed.headers, ...extra],
      payload: framed.payload,
      effectiveBody: framed.effectiveBody,
      control,
    };
    specs.push(s);
    return s;
  };
  const single = (
    draft: Draft,
    framing: Framing,
    control: boolean,
    options: { slow?: boolean; extra?: Header[] } = {},
  ) => {
    const framed = frame(rng, draft.body, framing);
    const s = spec(draft, framed, control, [...(options.extra ?? []), ["Connection", "close"]]);
    const wellFormed = (framing === "length" || framing === "chunked") && framed.closeAfterPayload === undefined;
    const headBytes = requestHead(s).length;
    sessions.push({
      specs: [s],
      closeAfter: framed.closeAfterPayload === undefined ? undefined : headBytes + framed.closeAfterPayload,
      halfClose: framed.halfClose,
      slowSplit: options.slow ? rng.int(1, headBytes + s.payload.length - 1) : undefined,
      expectAnswers: wellFormed && draft.intent !== "noise",
      timeoutMs: wellFormed && draft.intent !== "noise" ? 15_000 : 3_000,
    });
    return s;
  };

  while (n < count) {
    const route = rng.pick(ROUTES);
    const category = rng.weighted<string>([
      [22, "control"],
      [8, "valid-transport"],
      [4, "keepalive"],
      [3, "resend"],
      [14, "body-mutation"],
      [14, "signature-mutation"],
      [4, "harmless-signature"],
      [5, "signed-header-mutation"],
      [4, "unsigned-header-change"],
      [4, "signed-encoding"],
      [9, "noise"],
      [6, "hostile-headers"],
      [9, "framing"],
      [3, "size"],
    ]);
    switch (category) {
      case "control": {
        const s = single(validDraft(rng, route, id()), "length", true);
        controls.push(s);
        break;
      }
      case "valid-transport": {
        // Valid deliveries over unusual but legal transport: chunked, slow, 100-continue, tracing.
        const draft = validDraft(rng, route, id());
        const extra: Header[] = [];
        if (rng.chance(0.3)) extra.push(["Expect", "100-continue"]);
        if (rng.chance(0.3)) extra.push(["Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]);
        if (rng.chance(0.3)) extra.push(["X-Junk", "y".repeat(rng.int(1, 4000))]);
        const s = single(draft, rng.pick(["length", "chunked"]), true, { slow: rng.chance(0.4), extra });
        controls.push(s);
        break;
      }
      case "keepalive": {
        // Several requests pipelined on one connection: a refused one must not desynchronize the next.
        const batch: Spec[] = [];
        const size = rng.int(2, 4);
        for (let i = 0; i < size; i++) {
          const r = rng.pick(ROUTES);
          const valid = validDraft(rng, r, id());
          const draft = rng.chance(0.5) ? valid : mutate(rng, valid);
          const framed = frame(rng, draft.body, rng.pick(["length", "chunked"]));
          const s = spec(
            draft,
            framed,
            draft.intent === "valid" && draft.kind === valid.kind,
            i === size - 1 ? [["Connection", "close"]] : [],
          );
          if (s.control) controls.push(s);
          batch.push(s);
        }
        sessions.push({ specs: batch, expectAnswers: true, timeoutMs: 15_000 });
        break;
      }
      case "resend": {
        const original = controls.length > 0 ? rng.pick(controls) : undefined;
        if (!original) break;
        const headers =
          original.route === "slack"
            ? setHeader(original.headers, "X-Slack-Retry-Num", String(rng.int(1, 3)))
            : original.headers;
        const draft: Draft = {
          ...original,
          kind: `${original.kind}>resend`,
          headers: headers.filter(([name]) => !/^(host|content-length|transfer-encoding|connection)$/i.test(name)),
        };
        single(draft, "length", true);
        break;
      }
      case "body-mutation":
        single(
          rng.pick(Object.values(BODY_MUTATIONS))(rng, validDraft(rng, route, id())),
          rng.pick(["length", "length", "chunked"]),
          false,
        );
        break;
      case "signature-mutation": {
        const draft = validDraft(rng, route, id());
        single(rng.pick(Object.values(SIGNATURE_MUTATIONS))(rng, draft), rng.pick(["length", "chunked"]), false);
        break;
      }
      case "harmless-signature": {
        const draft = validDraft(rng, route, id());
        single(rng.pick(Object.values(HARMLESS_SIGNATURE_CHANGES))(rng, draft), "length", false);
        break;
      }
      case "signed-header-mutation": {
        const r = rng.pick(["slack", "custom"] as const);
        const draft = validDraft(rng, r, id());
        single(rng.pick(Object.values(SIGNED_HEADER_MUTATIONS))(rng, draft), "length", false);
        break;
      }
      case "unsigned-header-change": {
        const draft = validDraft(rng, route, id());
        single(rng.pick(Object.values(UNSIGNED_HEADER_CHANGES))(rng, draft), "length", false);
        break;
      }
      case "signed-encoding":
        single(
          rng.pick(Object.values(SIGNED_ENCODINGS))(rng, validDraft(rng, route, id())),
          rng.pick(["length", "chunked"]),
          false,
        );
        break;
      case "noise":
        single(
          noiseDraft(rng, id()),
          rng.weighted<Framing>([
            [6, "length"],
            [2, "chunked"],
            [1, "none"],
            [1, "cl-short"],
          ]),
          false,
        );
        break;
      case "hostile-headers": {
        const base = rng.chance(0.5) ? validDraft(rng, route, id()) : mutate(rng, validDraft(rng, route, id()));
        single(hostile(rng, base), "length", false);
        break;
      }
      case "framing": {
        const base = rng.chance(0.6) ? validDraft(rng, route, id()) : mutate(rng, validDraft(rng, route, id()));
        const framing = rng.pick<Framing>([
          "none",
          "cl-short",
          "cl-long",
          "truncate",
          "te-cl",
          "bad-chunk",
          "chunked-truncate",
          "cl-bogus",
          "cl-dup",
        ]);
        if (rng.chance(0.15)) {
          // A request that never finishes its head.
          const head = requestHead({ ...base, headers: [["Host", "gateway.test"], ...base.headers] });
          const s = spec(
            { ...base, kind: `${base.kind}>partial-head`, intent: base.intent === "valid" ? "forged" : base.intent },
            { headers: [], payload: Buffer.alloc(0) },
            false,
          );
          sessions.push({
            specs: [s],
            closeAfter: rng.int(0, head.length - 3),
            expectAnswers: false,
            timeoutMs: 2_000,
          });
          break;
        }
        const draft = { ...base, kind: `${base.kind}>${framing}` };
        const s = single(draft, framing, false);
        if (framing === "truncate" || framing === "chunked-truncate" || framing === "cl-long")
          s.intent = s.intent === "valid" ? "forged" : s.intent;
        break;
      }
      case "size": {
        const r = rng.pick<Route>(["github", "custom", "github", "custom", "slack", "jira", "sentry"]);
        const draft = validDraft(rng, r, id());
        const declaredOnly = r === "jira" || r === "sentry" || (r === "slack" && rng.chance(0.7));
        if (declaredOnly) {
          // Declares more than the limit, sends little, and goes away.
          const s = spec(
            { ...draft, kind: `${draft.kind}>declared-oversize`, mustReject: "declared body over the limit" },
            { headers: [["Content-Length", String(LIMITS[r] + rng.int(1, 1e6))]], payload: draft.body },
            false,
            [["Connection", "close"]],
          );
          sessions.push({ specs: [s], halfClose: true, expectAnswers: false, timeoutMs: 3_000 });
          break;
        }
        // A whole body over the limit, validly signed: 413, never 2xx.
        const padding = filler(rng, LIMITS[r] + rng.int(1, LIMITS[r]))
          .toString("base64")
          .slice(0, LIMITS[r] + rng.int(1, 1000));
        const body = json({ pad: padding, text: "@hookmesh" });
        const headers = resign(draft, body, SECRETS[r][0]!);
        const s = single(
          { ...draft, kind: `${draft.kind}>oversize`, body, headers, mustReject: "body over the limit" },
          rng.pick(["length", "chunked"]),
          false,
        );
        s.primaryId = undefined;
        break;
      }
    }
  }
  return { sessions, specs };
}

function mutate(rng: Rng, draft: Draft): Draft {
  const pool = { ...BODY_MUTATIONS, ...SIGNATURE_MUTATIONS };
  return rng.pick(Object.values(pool))(rng, draft);
}

function hostile(rng: Rng, d: Draft): Draft {
  const headers = [...d.headers];
  const add = (h: Header) => headers.splice(rng.int(0, headers.length), 0, h);
  const kind = rng.weighted<string>([
    [2, "huge"],
    [1, "many"],
    [2, "non-ascii"],
    [1, "control-char"],
    [1, "bad-name"],
    [1, "dup-content-type"],
    [1, "obs-fold"],
    [1, "upgrade"],
    [1, "http10"],
  ]);
  switch (kind) {
    case "huge":
      add([`X-Huge-${rng.int(0, 9)}`, "h".repeat(rng.int(4_000, 20_000))]);
      break;
    case "many":
      for (let i = rng.int(100, 2500); i > 0; i--) add([`X-Many-${i}`, String(i)]);
      break;
    case "non-ascii":
      add([
        rng.pick(["X-Note", "User-Agent", "X-GitHub-Event", "Request-ID", "X-Fuzz-Event"]),
        rng.chance(0.5) ? Buffer.from(`Grüße 👋 日本語`) : rng.high(16),
      ]);
      break;
    case "control-char":
      add([
        "X-Ctl",
        Buffer.concat([Buffer.from("a"), Buffer.from([rng.pick([0x00, 0x0d, 0x0a, 0x07, 0x7f])]), Buffer.from("b")]),
      ]);
      break;
    case "bad-name":
      add([rng.pick(["X Bad", "X\u00e9", "(x)", "X@Y", "", "X-Sig\t"]), "v"]);
      break;
    case "dup-content-type":
      add(["Content-Type", rng.pick(["text/plain", "application/json", "application/xml"])]);
      break;
    case "obs-fold":
      add(["X-Folded", "first\r\n second"]);
      break;
    case "upgrade":
      add(["Upgrade", "websocket"]);
      add(["Connection", "Upgrade"]);
      break;
    case "http10":
      // The request line says HTTP/1.0 (below): no chunked bodies, no keep-alive by default.
      break;
  }
  return { ...d, kind: `${d.kind}>hostile:${kind}`, headers, ...(kind === "http10" && { version: "HTTP/1.0" }) };
}

function requestHead(s: Pick<Draft, "method" | "target" | "headers" | "version">): Buffer {
  const parts: Buffer[] = [Buffer.from(`${s.method} ${s.target} ${s.version ?? "HTTP/1.1"}\r\n`)];
  for (const [name, value] of s.headers)
    parts.push(Buffer.from(`${name}: `), typeof value === "string" ? Buffer.from(value) : value, Buffer.from("\r\n"));
  parts.push(Buffer.from("\r\n"));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// The oracle: is this request validly signed, as the server sees it?

/** Headers Node keeps the first of; every other repeated header is joined with ", ". */
const FIRST_WINS = new Set([
  "content-type",
  "content-length",
  "user-agent",
  "referer",
  "host",
  "authorization",
  "proxy-authorization",
  "if-modified-since",
  "if-unmodified-since",
  "from",
  "location",
  "max-forwards",
  "retry-after",
  "etag",
  "last-modified",
  "server",
  "age",
  "expires",
]);

function serverHeaders(headers: Header[]): Map<string, string> {
  const seen = new Map<string, string>();
  for (const [name, raw] of headers) {
    const key = name.toLowerCase();
    const value = (typeof raw === "string" ? Buffer.from(raw) : raw).toString("latin1").replace(/^[ \t]+|[ \t]+$/g, "");
    const previous = seen.get(key);
    if (previous === undefined) seen.set(key, value);
    else if (!FIRST_WINS.has(key)) seen.set(key, `${previous}, ${value}`);
  }
  return seen;
}

function routeOf(target: string): { webhook: boolean; route?: Route } {
  let path: string;
  try {
    path = new URL(target, "http://gateway").pathname;
  } catch {
    return { webhook: false };
  }
  if (!path.startsWith("/webhooks/")) return { webhook: false };
  let name: string;
  try {
    name = decodeURIComponent(path.slice("/webhooks/".length));
  } catch {
    return { webhook: true };
  }
  const route = (Object.keys(PATHS) as Route[]).find((r) => PATHS[r] === `/webhooks/${name}`);
  return { webhook: true, route };
}

function digestMatches(given: string | undefined, expected: string[]): boolean {
  return given !== undefined && /^[0-9a-f]{64}$/i.test(given) && expected.includes(given.toLowerCase());
}

function freshTimestamp(ts: string | undefined): ts is string {
  return ts !== undefined && /^\d+$/.test(ts) && Math.abs(Number(ts) - Date.now() / 1000) <= 300;
}

interface Verdict {
  webhook: boolean;
  route?: Route;
  /** Carries a valid signature under a configured secret, over the body the server reads. */
  signed: boolean;
  /** Slack's certificate check: answered with an empty object, never an event. */
  sslCheck: boolean;
}

function judge(s: Spec): Verdict {
  const { webhook, route } = routeOf(s.target);
  const body = s.effectiveBody;
  const verdict: Verdict = { webhook, route, signed: false, sslCheck: false };
  if (!route || s.method !== "POST" || body === undefined) return verdict;
  const h = serverHeaders(s.headers);
  const contentType = (h.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (route === "slack" && contentType === "application/x-www-form-urlencoded") {
    verdict.sslCheck = new URLSearchParams(body.toString("utf8")).get("ssl_check") === "1";
  }
  const secrets = SECRETS[route];
  const prefixed = (value: string | undefined, prefix: string) =>
    value !== undefined && value.slice(0, prefix.length).toLowerCase() === prefix
      ? value.slice(prefix.length)
      : undefined;
  switch (route) {
    case "github":
      verdict.signed = digestMatches(
        prefixed(h.get("x-hub-signature-256"), "sha256="),
        secrets.map((k) => hmacHex(k, body)),
      );
      break;
    case "jira":
      verdict.signed = digestMatches(
        prefixed(h.get("x-hub-signature"), "sha256="),
        secrets.map((k) => hmacHex(k, body)),
      );
      break;
    case "sentry":
      verdict.signed = digestMatches(
        h.get("sentry-hook-signature"),
        secrets.map((k) => hmacHex(k, body)),
      );
      break;
    case "slack": {
      const ts = h.get("x-slack-request-timestamp");
      verdict.signed =
        freshTimestamp(ts) &&
        digestMatches(
          prefixed(h.get("x-slack-signature"), "v0="),
          secrets.map((k) => hmacHex(k, `v0:${ts}:`, body)),
        );
      break;
    }
    case "custom": {
      const ts = h.get("x-fuzz-timestamp");
      verdict.signed =
        freshTimestamp(ts) &&
        digestMatches(
          prefixed(h.get("x-fuzz-signature"), "sha256="),
          secrets.map((k) => hmacHex(k, `${ts}.`, body)),
        );
      break;
    }
  }
  return verdict;
}

/** The digest a request to `route` with these headers and body should carry under `secret`. */
function expectedDigest(route: Route, headers: Header[], body: Buffer, secret: string): string {
  const h = serverHeaders(headers);
  if (route === "slack") return hmacHex(secret, `v0:${h.get("x-slack-request-timestamp") ?? ""}:`, body);
  if (route === "custom") return hmacHex(secret, `${h.get("x-fuzz-timestamp") ?? ""}.`, body);
  return hmacHex(secret, body);
}

/** Every delivery id the gateway could derive from this request. */
function candidateIds(s: Spec): string[] {
  const h = serverHeaders(s.headers);
  const ids = [...h.values()];
  const body = s.effectiveBody ?? Buffer.alloc(0);
  ids.push(`sha256:${sha256(body)}`);
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { event_id?: unknown };
    if (typeof parsed.event_id === "string") ids.push(parsed.event_id);
  } catch {
    // not JSON
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// The client side: raw sockets and a small HTTP/1.1 response parser

interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function parseResponses(buf: Buffer, methods: string[], eof: boolean): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const headEnd = buf.indexOf("\r\n\r\n", pos);
    if (headEnd < 0) break;
    const lines = buf.subarray(pos, headEnd).toString("latin1").split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
    if (!status) break;
    const code = Number(status[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const at = line.indexOf(":");
      if (at > 0) headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim();
    }
    let at = headEnd + 4;
    if (code >= 100 && code < 200) {
      pos = at;
      continue;
    }
    let body = "";
    if (methods[out.length] === "HEAD" || code === 204 || code === 304) {
      // no body
    } else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
      const parts: Buffer[] = [];
      let complete = false;
      for (;;) {
        const lineEnd = buf.indexOf("\r\n", at);
        if (lineEnd < 0) break;
        const size = parseInt(buf.subarray(at, lineEnd).toString("latin1"), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const end = buf.indexOf("\r\n\r\n", lineEnd);
          if (end < 0) break;
          at = end + 4;
          complete = true;
          break;
        }
        if (buf.length < lineEnd + 2 + size + 2) break;
        parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(parts).toString("utf8");
    } else if (headers["content-length"] !== undefined) {
      const length = Number(headers["content-length"]);
      if (buf.length < at + length) break;
      body = buf.subarray(at, at + length).toString("utf8");
      at += length;
    } else {
      if (!eof) break;
      body = buf.subarray(at).toString("utf8");
      at = buf.length;
    }
    out.push({ status: code, headers, body });
    pos = at;
  }
  return out;
}

function runSession(port: number, session: Session, rng: Rng): Promise<void> {
  const bytes = Buffer.concat(session.specs.flatMap((s) => [requestHead(s), s.payload]));
  const methods = session.specs.map((s) => s.method);
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const received: Buffer[] = [];
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      const responses = parseResponses(Buffer.concat(received), methods, true);
      responses.forEach((r, i) => {
        const s = session.specs[i];
        if (!s) return;
        s.status = r.status;
        s.responseBody = r.body;
        s.responseHeaders = r.headers;
      });
      resolve();
    };
    const timer = setTimeout(() => {
      session.timedOut = true;
      finish();
    }, session.timeoutMs);
    socket.on("data", (chunk: Buffer) => {
      received.push(chunk);
      if (parseResponses(Buffer.concat(received), methods, false).length >= session.specs.length) finish();
    });
    socket.on("error", () => {});
    socket.on("close", finish);
    socket.once("connect", () => {
      void (async () => {
        try {
          if (session.closeAfter !== undefined) {
            socket.write(bytes.subarray(0, session.closeAfter));
            await sleep(rng.int(0, 30));
            finish();
            return;
          }
          if (session.slowSplit !== undefined) {
            socket.write(bytes.subarray(0, session.slowSplit));
            await sleep(rng.int(10, 80));
            if (finished) return;
            socket.write(bytes.subarray(session.slowSplit));
          } else {
            socket.write(bytes);
          }
          if (session.halfClose) socket.end();
        } catch {
          finish();
        }
      })();
    });
  });
}

// ---------------------------------------------------------------------------------------------

const SIGNATURE_HEADERS = [
  "x-hub-signature-256",
  "x-hub-signature",
  "x-slack-signature",
  "sentry-hook-signature",
  "x-fuzz-signature",
];
const VERIFIED_STATUSES = new Set([
  DeliveryStatus.ACCEPTED,
  DeliveryStatus.DUPLICATE,
  DeliveryStatus.IGNORED,
  DeliveryStatus.QUEUED,
  DeliveryStatus.FAILED,
]);

describe(`webhook edge under fuzzing (FUZZ_SEED=${SEED})`, () => {
  let db: TestRedis;
  let mesh: { tasks: RunningTasks; gateway: RunningGateway };
  const lines: string[] = [];
  const sessions: Http2SessionManager[] = [];

  beforeAll(async () => {
    console.log(`gateway fuzz: FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT}`);
    db = await testRedis("gateway-fuzz");
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(
          ...chunk
            .toString()
            .split("\n")
            .filter((l) => l !== ""),
        );
        callback();
      },
    });
    const logger = createLogger({ service: "fuzz", level: "warn", destination });
    const tasks = await startTasks(db, logger);
    const gateway = await startGateway(db, tasks.url, logger, {
      GITHUB_WEBHOOK_SECRET: SECRETS.github.join(","),
      SLACK_SIGNING_SECRET: SECRETS.slack.join(","),
      JIRA_WEBHOOK_SECRET: SECRETS.jira.join(","),
      SENTRY_CLIENT_SECRET: SECRETS.sentry.join(","),
      GITHUB_MAX_BODY_BYTES: String(GITHUB_LIMIT),
    });
    mesh = { tasks, gateway };
    await mesh.gateway.customWebhooks.upsert(
      create(CustomRouteSchema, {
        name: "fuzz",
        signatureHeader: "X-Fuzz-Signature",
        signaturePrefix: "sha256=",
        algorithm: HmacAlgorithm.SHA256,
        signedContent: SignedContent.TIMESTAMP_DOT_BODY,
        timestampHeader: "X-Fuzz-Timestamp",
        deliveryIdHeader: "X-Fuzz-Delivery",
        eventTypeHeader: "X-Fuzz-Event",
        secret: SECRETS.custom.join(","),
        maxBodyBytes: CUSTOM_LIMIT,
      }),
    );
  });

  afterAll(async () => {
    for (const s of sessions) s.abort();
    await mesh?.gateway.close();
    await mesh?.tasks.close();
    await db?.cleanup();
  });

  it(`survives ${COUNT} random and mutated requests and accepts no forged delivery`, { timeout: 120_000 }, async () => {
    const started = performance.now();
    const { sessions: plan, specs } = generate(SEED, COUNT);
    const base = mesh.gateway.base;
    const port = Number(new URL(base).port);
    const violations: string[] = [];
    const violation = (s: Spec | undefined, what: string) =>
      violations.push(
        `${what}${s ? ` [#${s.n} ${s.kind} ${s.method} ${s.target.slice(0, 80)} -> ${s.status ?? "no answer"} ${(s.responseBody ?? "").slice(0, 120)}]` : ""}`,
      );

    // The process stays up throughout: probe it while the fuzz runs.
    const probes: number[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        probes.push(await get(base, "/healthz"), await get(base, "/readyz"));
        await sleep(100);
      }
    })();

    const clientRng = new Rng(SEED ^ 0x5eed);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < plan.length) await runSession(port, plan[next++]!, clientRng);
      }),
    );
    probing = false;
    await prober;
    const fuzzSeconds = (performance.now() - started) / 1000;

    // Per response.
    const allowed = new Set<string>();
    const forgedIds = new Set<string>();
    const taskIds = new Set<string>();
    const mustBeTasks: Spec[] = [];
    const statusCounts: Record<string, number> = {};
    const forgedSignatures = new Set<string>();
    let forgedCount = 0;
    // Where the oracle and the gateway disagree in the safe direction, for the summary.
    const signedButRefused = new Map<string, number>();
    const unsignedValid = new Map<string, number>();
    let validCount = 0;
    for (const s of specs) {
      const v = judge(s);
      const key = String(s.status ?? "none");
      statusCounts[key] = (statusCounts[key] ?? 0) + 1;
      if (v.signed && v.route) {
        validCount++;
        for (const id of candidateIds(s)) allowed.add(`${PROVIDERS[v.route]}|${id}`);
      } else {
        forgedCount += s.intent !== "noise" ? 1 : 0;
        if (s.route) {
          // Its ids must not become tasks, even if a validly signed request somehow shared them.
          const id = getHeader(
            s.headers,
            {
              github: "X-GitHub-Delivery",
              slack: "",
              jira: "X-Atlassian-Webhook-Identifier",
              sentry: "Request-ID",
              custom: "X-Fuzz-Delivery",
            }[s.route],
          );
          if (id && s.kind !== "noise") forgedIds.add(`${PROVIDERS[s.route]}|${id}`);
          // The signature this request would have needed: it must never be logged.
          if (s.effectiveBody)
            for (const secret of SECRETS[s.route])
              forgedSignatures.add(expectedDigest(s.route, s.headers, s.effectiveBody, secret));
        }
      }
      if (v.signed && s.status === 401) signedButRefused.set(s.kind, (signedButRefused.get(s.kind) ?? 0) + 1);
      if (!v.signed && s.intent === "valid" && s.status !== undefined)
        unsignedValid.set(s.kind, (unsignedValid.get(s.kind) ?? 0) + 1);
      if (s.status !== undefined && s.status >= 500) violation(s, "5xx answer");
      const ok = s.status !== undefined && s.status >= 200 && s.status < 300;
      if (ok && v.webhook && !v.signed) violation(s, "FORGED DELIVERY ACCEPTED");
      if (ok && s.mustReject) violation(s, `accepted although ${s.mustReject}`);
      if (ok && v.sslCheck && s.responseBody !== "{}") violation(s, "ssl_check answered with more than {}");
      if (s.control) {
        if (!v.signed) violation(s, "test bug: a control request the oracle does not consider signed");
        else if (!ok) violation(s, "validly signed delivery not acknowledged");
        else if (s.event) mustBeTasks.push(s);
      }
      if (s.status === 202) {
        const reply = JSON.parse(s.responseBody ?? "{}") as { task_id?: string };
        if (reply.task_id) taskIds.add(reply.task_id);
      }
    }
    for (const session of plan) {
      if (session.timedOut && session.expectAnswers)
        violation(session.specs[0], `no answer within ${session.timeoutMs} ms to a well-formed request`);
    }
    for (const id of forgedIds) allowed.delete(id);

    // Still up, and still serving.
    expect(await get(base, "/healthz")).toBe(200);
    expect(await get(base, "/readyz")).toBe(200);
    const badProbes = probes.filter((p) => p !== 200).length;
    if (badProbes > 0)
      violations.push(`${badProbes} of ${probes.length} health/readiness probes during the fuzz did not answer 200`);

    // Whatever went to the outbox (a slow submit) is forwarded before the tasks are counted.
    await vi.waitFor(async () => expect(await mesh.gateway.outbox.length()).toBe(0), {
      timeout: 20_000,
      interval: 100,
    });

    const tasksSession = new Http2SessionManager(mesh.tasks.url);
    const gatewaySession = new Http2SessionManager(mesh.gateway.grpcUrl);
    sessions.push(tasksSession, gatewaySession);
    const tasks = createClient(
      TaskService,
      createGrpcTransport({ baseUrl: mesh.tasks.url, sessionManager: tasksSession }),
    );
    const deliveries = createClient(
      DeliveryService,
      createGrpcTransport({ baseUrl: mesh.gateway.grpcUrl, sessionManager: gatewaySession }),
    );

    const allTasks: Task[] = [];
    for (let pageToken = ""; ; ) {
      const page = await tasks.listTasks({ pageSize: 500, pageToken });
      allTasks.push(...page.tasks);
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }
    const perDelivery = new Map<string, number>();
    const taskKeys = new Set<string>();
    for (const task of allTasks) {
      const event = task.event!;
      const key = `${event.provider}|${event.deliveryId}`;
      taskKeys.add(key);
      const scoped = `${key}|${event.sourceId}`;
      perDelivery.set(scoped, (perDelivery.get(scoped) ?? 0) + 1);
      if (!allowed.has(key))
        violations.push(
          `FORGED DELIVERY BECAME A TASK: task ${task.id} for ${Provider[event.provider]} delivery ${event.deliveryId}`,
        );
    }
    for (const [key, count] of perDelivery) if (count > 1) violations.push(`delivery ${key} became ${count} tasks`);
    const listedIds = new Set(allTasks.map((t) => t.id));
    for (const id of taskIds) if (!listedIds.has(id)) violations.push(`task ${id} acknowledged in a 202 is not listed`);
    for (const s of mustBeTasks) {
      if (s.primaryId && !taskKeys.has(`${PROVIDERS[s.route!]}|${s.primaryId}`))
        violation(s, `acknowledged delivery ${s.primaryId} did not become a task`);
    }

    const logged: Delivery[] = [];
    for (let pageToken = ""; ; ) {
      const page = await deliveries.listDeliveries({ pageSize: 500, pageToken });
      logged.push(...page.deliveries);
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }
    for (const d of logged) {
      if (VERIFIED_STATUSES.has(d.status) && !allowed.has(`${d.provider}|${d.deliveryId}`)) {
        violations.push(
          `FORGED DELIVERY LOGGED AS ${DeliveryStatus[d.status]}: ${Provider[d.provider]} ${d.deliveryId} (${d.route})`,
        );
      }
      for (const name of SIGNATURE_HEADERS) {
        if (d.headers[name] !== undefined && d.headers[name] !== "[redacted]")
          violations.push(`delivery ${d.id} keeps ${name} unredacted`);
      }
    }

    // Nothing logged gives away a secret or the signature a forged request needed.
    const errors = lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
    for (const line of errors.slice(0, 5)) violations.push(`error logged: ${line.slice(0, 300)}`);
    for (const line of lines) {
      const secret = ALL_SECRETS.find((k) => line.includes(k));
      if (secret) violations.push(`a log line contains the secret ${secret}: ${line.slice(0, 200)}`);
      for (const hex of line.match(/[0-9a-f]{64}/g) ?? [])
        if (forgedSignatures.has(hex))
          violations.push(`a log line contains an expected signature: ${line.slice(0, 200)}`);
    }

    const kinds = new Map<string, number>();
    for (const s of specs) kinds.set(s.kind.split(">")[0]!, (kinds.get(s.kind.split(">")[0]!) ?? 0) + 1);
    console.log(
      `gateway fuzz: seed ${SEED}: ${specs.length} requests in ${plan.length} connections in ${fuzzSeconds.toFixed(1)} s ` +
        `(${validCount} validly signed, ${forgedCount} forged or broken, ${specs.filter((s) => s.intent === "noise").length} noise; ` +
        `${mustBeTasks.length} clean deliveries checked as tasks); statuses ${JSON.stringify(statusCounts)}; ` +
        `${allTasks.length} tasks, ${logged.length} logged deliveries, ${probes.length} probes; total ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    console.log(`validly signed but refused with 401: ${JSON.stringify(Object.fromEntries(signedButRefused))}`);
    console.log(`meant valid, judged unsigned: ${JSON.stringify(Object.fromEntries(unsignedValid))}`);
    expect(violations, `FUZZ_SEED=${SEED}: ${violations.length} violations`).toEqual([]);
  });
});
