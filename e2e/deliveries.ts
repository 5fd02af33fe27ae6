import { randomUUID } from "node:crypto";
import * as http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { forwardedAt, TEST_SECRETS } from "@hookmesh/gateway/testing";
import { signGitHub, signJira, signSentry, signSlack } from "@hookmesh/kit/testing";

/** Deliveries as each provider sends them, signed with the gateway's test secrets. */

export const JSON_TYPE = "application/json";
export const FORM_TYPE = "application/x-www-form-urlencoded";

export type Json = Record<string, unknown>;

export interface Reply {
  status: number;
  headers: Headers;
  json: Json;
}

/** POSTs `body` to the gateway's `/webhooks/{endpoint}`; a delivery it queued, once forwarded. */
export async function post(
  base: string,
  endpoint: string,
  body: Buffer | string,
  headers: Record<string, string>,
): Promise<Reply> {
  const res = await fetch(`${base}/webhooks/${endpoint}`, { method: "POST", headers, body: Buffer.from(body) });
  const text = await res.text();
  const json = text === "" ? {} : (JSON.parse(text) as Json);
  // The acknowledgment comes before the task: a test looks at what became of the delivery
  // once the gateway's forwarder has submitted it.
  if (json.queued === true) await forwardedAt(base);
  return { status: res.status, headers: res.headers, json };
}

export function githubHeaders(
  body: Buffer | string,
  {
    event = "issue_comment",
    delivery = randomUUID() as string,
    hookId = "109948940",
    secret = TEST_SECRETS.github,
  } = {},
): Record<string, string> {
  return {
    "content-type": JSON_TYPE,
    "x-github-event": event,
    "x-github-delivery": delivery,
    "x-github-hook-id": hookId,
    "x-hub-signature-256": signGitHub(body, secret),
  };
}

export function slackHeaders(
  body: Buffer | string,
  contentType = JSON_TYPE,
  extra: Record<string, string> = {},
): Record<string, string> {
  const timestamp = Math.floor(Date.now() / 1000);
  return {
    "content-type": contentType,
    "x-slack-request-timestamp": String(timestamp),
    "x-slack-signature": signSlack(body, TEST_SECRETS.slack, timestamp),
    ...extra,
  };
}

export function jiraHeaders(body: Buffer | string, identifier: string = randomUUID()): Record<string, string> {
  return {
    "content-type": JSON_TYPE,
    "x-hub-signature": signJira(body, TEST_SECRETS.jira),
    "x-atlassian-webhook-identifier": identifier,
    "x-atlassian-webhook-flow": "Primary",
  };
}

export function sentryHeaders(
  body: Buffer | string,
  resource: string,
  requestId: string = randomUUID(),
): Record<string, string> {
  return {
    "content-type": JSON_TYPE,
    "request-id": requestId,
    "sentry-hook-resource": resource,
    "sentry-hook-timestamp": String(Math.floor(Date.now() / 1000)),
    "sentry-hook-signature": signSentry(body, TEST_SECRETS.sentry),
  };
}

/** The status of a GET on its own connection; 0 when there is no answer within 5 s. */
export function get(base: string, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(`${base}${path}`, { agent: false, timeout: 5_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(0));
  });
}

/**
 * The body of a GitHub `issue_comment` (created) by the repository's owner that says
 * `@hookmesh <text>`, which the default rules queue; on issue 7 ("Flaky test") unless told.
 */
export function githubMention(
  text: string,
  issue: { number: number; title: string; commentId: number } = { number: 7, title: "Flaky test", commentId: 99 },
): string {
  return JSON.stringify({
    action: "created",
    issue: { number: issue.number, title: issue.title },
    comment: { id: issue.commentId, body: `@hookmesh ${text}`, author_association: "OWNER" },
    repository: { name: "repo", owner: { login: "octo" } },
    sender: { id: 1, login: "octocat", type: "User" },
  });
}

/** Senders that keep posting GitHub deliveries, and what became of them. */
export interface ContinuousSenders {
  /** The delivery ids the gateway acknowledged (202). */
  readonly acknowledged: Set<string>;
  /** How often each HTTP status came back (0: no answer within 10 s). */
  readonly answers: Map<number, number>;
  /** Stops sending and waits for the requests in flight. */
  stop(): Promise<void>;
}

/**
 * `senders` concurrent senders posting distinct signed GitHub deliveries (`body(id)`, ids
 * starting with `idPrefix`) to the gateway at `base` until stopped, as a provider keeps sending
 * through an outage: a refused delivery is not counted as acknowledged, and the sender pauses
 * 50 ms before its next.
 */
export function sendContinuously(
  base: string,
  body: (id: string) => string,
  options: { idPrefix: string; senders?: number },
): ContinuousSenders {
  const acknowledged = new Set<string>();
  const answers = new Map<number, number>();
  let sending = true;
  const send = async () => {
    while (sending) {
      const id = `${options.idPrefix}${randomUUID()}`;
      const payload = body(id);
      const status = await fetch(`${base}/webhooks/github`, {
        method: "POST",
        headers: githubHeaders(payload, { delivery: id }),
        body: payload,
        signal: AbortSignal.timeout(10_000),
      }).then(
        async (res) => {
          await res.arrayBuffer();
          return res.status;
        },
        () => 0,
      );
      answers.set(status, (answers.get(status) ?? 0) + 1);
      if (status === 202) acknowledged.add(id);
      else await sleep(50);
    }
  };
  const senders = Array.from({ length: options.senders ?? 4 }, send);
  return {
    acknowledged,
    answers,
    async stop() {
      sending = false;
      await Promise.all(senders);
    },
  };
}
