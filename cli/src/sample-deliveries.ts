import { randomInt, randomUUID } from "node:crypto";
// The signing schemes as the providers document them, shared with the tests: `send` signs a test delivery.
import { signGitHub, signJira, signSentry, signSlack } from "@hookmesh/kit/testing";

/** The providers `hookmesh send` can imitate: the gateway's built-in webhook endpoints. */
export const SAMPLE_PROVIDERS = ["github", "slack", "jira", "sentry"] as const;
export type SampleProvider = (typeof SAMPLE_PROVIDERS)[number];

export function isSampleProvider(name: string | undefined): name is SampleProvider {
  return (SAMPLE_PROVIDERS as readonly (string | undefined)[]).includes(name);
}

/** The variable (or its `_FILE`) each provider's signing secret comes from, as the gateway reads it. */
export const SECRET_VARIABLES: Readonly<Record<SampleProvider, string>> = {
  github: "GITHUB_WEBHOOK_SECRET",
  slack: "SLACK_SIGNING_SECRET",
  jira: "JIRA_WEBHOOK_SECRET",
  sentry: "SENTRY_CLIENT_SECRET",
};

export interface SampleOptions {
  /** What the person asks, after the mention. */
  text: string;
  /** The handle mention rules look for (`HOOKMESH_MENTION`). */
  mention: string;
  secret: string;
  now: Date;
}

/** A delivery as the provider would send it: headers (signature included) and the exact body bytes. */
export interface SampleDelivery {
  /** The provider's own event name, e.g. `issue_comment`. */
  eventType: string;
  /** The identity the gateway's duplicate check keys on. */
  deliveryId: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * A fresh delivery of the event that hookmesh's default routing rule for the provider turns
 * into a task: someone with write access mentioning the handle. Every call has new ids, so
 * no two are duplicates. The signing follows each provider's documentation, as the gateway
 * verifies it.
 */
export function sampleDelivery(provider: SampleProvider, options: SampleOptions): SampleDelivery {
  switch (provider) {
    case "github":
      return githubIssueComment(options);
    case "slack":
      return slackAppMention(options);
    case "jira":
      return jiraCommentCreated(options);
    case "sentry":
      return sentryCommentCreated(options);
  }
}

const JSON_TYPE = "application/json";

/** An `issue_comment` created by the repository's owner; on GitHub only write access triggers. */
function githubIssueComment({ text, mention, secret, now }: SampleOptions): SampleDelivery {
  const deliveryId = randomUUID();
  const commentId = randomInt(1, 2 ** 31);
  const repository = "https://github.com/octocat/hello-world";
  const octocat = { login: "octocat", id: 583231, type: "User" };
  const body = JSON.stringify({
    action: "created",
    issue: {
      number: 1,
      title: "Try hookmesh",
      state: "open",
      html_url: `${repository}/issues/1`,
      user: octocat,
      author_association: "OWNER",
      body: "",
    },
    comment: {
      id: commentId,
      html_url: `${repository}/issues/1#issuecomment-${commentId}`,
      user: octocat,
      author_association: "OWNER",
      body: `${mention} ${text}`,
      created_at: now.toISOString(),
      updated_at: now.toISOString(),
    },
    repository: {
      id: 1296269,
      name: "hello-world",
      full_name: "octocat/hello-world",
      owner: octocat,
      html_url: repository,
      private: false,
    },
    sender: octocat,
  });
  return {
    eventType: "issue_comment",
    deliveryId,
    headers: {
      "content-type": JSON_TYPE,
      "user-agent": "GitHub-Hookshot/hookmesh-send",
      "x-github-event": "issue_comment",
      "x-github-delivery": deliveryId,
      "x-github-hook-id": "1",
      "x-github-hook-installation-target-type": "repository",
      "x-github-hook-installation-target-id": "1296269",
      "x-hub-signature-256": signGitHub(body, secret),
    },
    body,
  };
}

/** An Events API `app_mention`: Slack writes the mention as the app's user id, `<@U…>`. */
function slackAppMention({ text, secret, now }: SampleOptions): SampleDelivery {
  const seconds = Math.floor(now.getTime() / 1000);
  const ts = `${seconds}.${String(randomInt(0, 1_000_000)).padStart(6, "0")}`;
  const deliveryId = `Ev${randomUUID().replace(/-/g, "").slice(0, 10).toUpperCase()}`;
  const body = JSON.stringify({
    token: "hookmesh-send",
    team_id: "T0HOOKMESH",
    api_app_id: "A0HOOKMESH",
    event: {
      type: "app_mention",
      user: "U0OCTOCAT",
      text: `<@U0HOOKMESH> ${text}`,
      ts,
      team: "T0HOOKMESH",
      channel: "C0HOOKMESH",
      event_ts: ts,
    },
    type: "event_callback",
    event_id: deliveryId,
    event_time: seconds,
  });
  return {
    eventType: "app_mention",
    deliveryId,
    headers: {
      "content-type": JSON_TYPE,
      "x-slack-request-timestamp": String(seconds),
      "x-slack-signature": signSlack(body, secret, seconds),
    },
    body,
  };
}

/** A Jira Cloud `comment_created` on PROJ-1. */
function jiraCommentCreated({ text, mention, secret, now }: SampleOptions): SampleDelivery {
  const deliveryId = randomUUID();
  const site = "https://example.atlassian.net";
  const commentId = String(randomInt(10_000, 2 ** 31));
  const author = { accountId: "5b10ac8d82e05b22cc7d4ef5", displayName: "Octo Cat", accountType: "atlassian" };
  const body = JSON.stringify({
    timestamp: now.getTime(),
    webhookEvent: "comment_created",
    comment: {
      self: `${site}/rest/api/2/issue/10001/comment/${commentId}`,
      id: commentId,
      author,
      updateAuthor: author,
      body: `${mention} ${text}`,
      created: now.toISOString(),
      updated: now.toISOString(),
    },
    issue: { id: "10001", self: `${site}/rest/api/2/issue/10001`, key: "PROJ-1", fields: { summary: "Try hookmesh" } },
  });
  return {
    eventType: "comment_created",
    deliveryId,
    headers: {
      "content-type": JSON_TYPE,
      "x-atlassian-webhook-identifier": deliveryId,
      "x-hub-signature": signJira(body, secret),
    },
    body,
  };
}

/** A comment created on a Sentry issue (resource `comment`). */
function sentryCommentCreated({ text, mention, secret, now }: SampleOptions): SampleDelivery {
  const deliveryId = randomUUID();
  const body = JSON.stringify({
    action: "created",
    data: {
      comment: `${mention} ${text}`,
      project_slug: "hello-world",
      comment_id: randomInt(1, 2 ** 31),
      issue_id: 1170820242,
      timestamp: now.toISOString(),
    },
    installation: { uuid: "7a485448-a9e2-4c85-8a3c-4f44175783c9" },
    actor: { type: "user", id: 1, name: "octocat" },
  });
  return {
    eventType: "comment",
    deliveryId,
    headers: {
      "content-type": JSON_TYPE,
      "request-id": deliveryId,
      "sentry-hook-resource": "comment",
      "sentry-hook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "sentry-hook-signature": signSentry(body, secret),
    },
    body,
  };
}
