import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { type Event, type GitHubSubject, Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { normalizeGitHub } from "../src/github/normalize.js";
import { exampleOf, examplesOf, type Payload } from "../src/testing.js";
import { EXAMPLE_RECEIVED, EXAMPLE_TRACEPARENT, githubDelivery } from "./examples.js";

function github(event: Event): GitHubSubject {
  const ref = event.subject?.ref;
  if (ref?.case !== "github") throw new Error(`subject is ${ref?.case}, not github`);
  return ref.value;
}

/** Narrow views of the example payloads, for computing expectations from them. */
type User = { login: string; id: number; type: string };
type Repo = { name: string; owner: { login: string }; html_url: string };
type Item = { number: number; title: string; body: string | null; html_url: string; author_association: string };
type Comment = { id: number; body: string | null; html_url: string; author_association: string };

describe("normalizeGitHub on real GitHub payloads", () => {
  it("issue_comment created: actor, association, subject, key and the comment as text", () => {
    const payload = exampleOf("issue_comment", "created");
    const comment = payload.comment as Comment;
    const issue = payload.issue as Item;
    const repository = payload.repository as Repo;
    const sender = payload.sender as User;
    const event = normalizeGitHub(githubDelivery("issue_comment", payload));

    expect(event.provider).toBe(Provider.GITHUB);
    expect(event.deliveryId).toBe("72d3162e-cc78-11e3-81ab-4c9367dc0958");
    expect(event.sourceId).toBe("109948940");
    expect(event.eventType).toBe("issue_comment");
    expect(event.action).toBe("created");
    expect(event.actor).toMatchObject({
      id: String(sender.id),
      login: sender.login,
      bot: false,
      association: comment.author_association,
    });
    expect(event.actor?.login).toBe("Codertocat");
    expect(event.actor?.association).toBe("OWNER");

    const subject = github(event);
    expect(subject.owner).toBe(repository.owner.login);
    expect(subject.repo).toBe(repository.name);
    expect(subject.number).toBe(BigInt(issue.number));
    expect(subject.pullRequest).toBe(false);
    expect(subject.commentId).toBe(BigInt(comment.id));
    expect(event.subject?.key).toBe(`github:${repository.owner.login}/${repository.name}#${issue.number}`);
    expect(event.subject?.key).toBe("github:Codertocat/Hello-World#1");
    expect(event.subject?.url).toBe(comment.html_url);
    expect(event.subject?.title).toBe(issue.title);
    expect(event.text).toBe(comment.body);
  });

  it("issue_comment on a pull request marks the subject as a pull request", () => {
    const payload = exampleOf("issue_comment", "created");
    (payload.issue as Payload).pull_request = { url: "https://api.github.com/repos/Codertocat/Hello-World/pulls/1" };
    expect(github(normalizeGitHub(githubDelivery("issue_comment", payload))).pullRequest).toBe(true);
  });

  it("issues opened: the issue body is the text, the issue is the subject", () => {
    const payload = examplesOf("issues").find(
      (p) => p.action === "opened" && typeof (p.issue as Item).body === "string",
    )!;
    const issue = payload.issue as Item;
    const event = normalizeGitHub(githubDelivery("issues", payload));
    expect(event.action).toBe("opened");
    expect(event.text).toBe(issue.body);
    expect(event.text).not.toBe("");
    expect(event.subject?.title).toBe(issue.title);
    expect(event.subject?.url).toBe(issue.html_url);
    expect(event.subject?.key).toBe(`github:Codertocat/Hello-World#${issue.number}`);
    expect(event.actor?.association).toBe(issue.author_association);
    const subject = github(event);
    expect(subject.pullRequest).toBe(false);
    expect(subject.commentId).toBe(0n);
  });

  it("issues opened with a null body has empty text", () => {
    const payload = examplesOf("issues").find((p) => p.action === "opened" && (p.issue as Item).body === null)!;
    expect(payload).toBeDefined();
    expect(normalizeGitHub(githubDelivery("issues", payload)).text).toBe("");
  });

  it("pull_request opened: a pull request subject with the PR body as text", () => {
    const payload = exampleOf("pull_request", "opened");
    const pr = payload.pull_request as Item;
    const event = normalizeGitHub(githubDelivery("pull_request", payload));
    const subject = github(event);
    expect(subject.pullRequest).toBe(true);
    expect(subject.number).toBe(BigInt(pr.number));
    expect(subject.commentId).toBe(0n);
    expect(event.subject?.key).toBe(`github:Codertocat/Hello-World#${pr.number}`);
    expect(event.subject?.title).toBe(pr.title);
    expect(event.subject?.url).toBe(pr.html_url);
    expect(event.text).toBe(pr.body ?? "");
  });

  it("pull_request_review submitted: the review's text and author association, but no comment id", () => {
    const payloads = examplesOf("pull_request_review").filter((p) => p.action === "submitted");
    expect(payloads.length).toBeGreaterThan(0);
    for (const payload of payloads) {
      const review = payload.review as Comment;
      const pr = payload.pull_request as Item;
      const event = normalizeGitHub(githubDelivery("pull_request_review", payload));
      const subject = github(event);
      expect(subject.pullRequest).toBe(true);
      expect(subject.number).toBe(BigInt(pr.number));
      // A review id is not a comment id: replying to it as a comment would hit the wrong API.
      expect(subject.commentId).toBe(0n);
      expect(event.subject?.key).toBe(`github:Codertocat/Hello-World#${pr.number}`);
      expect(event.subject?.url).toBe(review.html_url);
      expect(event.actor?.association).toBe(review.author_association);
      // The review's own words; a review without a body must not borrow the PR description.
      expect(event.text).toBe(review.body ?? "");
    }
  });

  it("a review with a body carries it as text", () => {
    const payload = exampleOf("pull_request_review", "submitted");
    (payload.review as Payload).body = "Please rename this variable.";
    expect(normalizeGitHub(githubDelivery("pull_request_review", payload)).text).toBe("Please rename this variable.");
  });

  it("issues labeled: the added label, for label-triggered rules", () => {
    const payload = examplesOf("issues").find((p) => p.action === "labeled")!;
    const event = normalizeGitHub(githubDelivery("issues", payload));
    expect(event.label).toBe((payload.label as { name: string }).name);
    expect(event.label).not.toBe("");
    expect(
      normalizeGitHub(githubDelivery("issues", examplesOf("issues").find((p) => p.action === "opened")!)).label,
    ).toBe("");
  });

  it("push: a repository-level subject with number 0 and no text", () => {
    for (const payload of examplesOf("push")) {
      const repository = payload.repository as Repo;
      const event = normalizeGitHub(githubDelivery("push", payload));
      const subject = github(event);
      expect(subject.owner).toBe(repository.owner.login);
      expect(subject.repo).toBe(repository.name);
      expect(subject.number).toBe(0n);
      expect(subject.pullRequest).toBe(false);
      expect(subject.commentId).toBe(0n);
      expect(event.subject?.key).toBe(`github:${repository.owner.login}/${repository.name}`);
      expect(event.subject?.url).toBe(repository.html_url);
      expect(event.action).toBe("");
      expect(event.text).toBe("");
      expect(event.actor?.login).toBe((payload.sender as User).login);
    }
  });

  it("carries the delivery's raw body, content type, receive time and trace context unchanged", () => {
    const payload = exampleOf("issue_comment", "created");
    // Deliberately not JSON.stringify(payload): the raw bytes must never be re-serialized.
    const rawBody = Buffer.from(`  ${JSON.stringify(payload, null, 2)}\n`);
    const event = normalizeGitHub(
      githubDelivery("issue_comment", payload, { rawBody, contentType: "application/x-www-form-urlencoded" }),
    );
    expect(Buffer.from(event.rawBody).equals(rawBody)).toBe(true);
    expect(event.contentType).toBe("application/x-www-form-urlencoded");
    expect(event.receiveTime).toEqual(timestampFromDate(EXAMPLE_RECEIVED));
    expect(event.traceContext?.traceparent).toBe(EXAMPLE_TRACEPARENT);
  });

  it("marks bots and reads the installation id of GitHub App deliveries", () => {
    const payload = exampleOf("issue_comment", "created");
    payload.sender = { login: "dependabot[bot]", id: 49699333, type: "Bot" };
    payload.installation = { id: 2311213, node_id: "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMjMxMTIxMw==" };
    const event = normalizeGitHub(githubDelivery("issue_comment", payload));
    expect(event.actor).toMatchObject({ login: "dependabot[bot]", id: "49699333", bot: true });
    expect(github(event).installationId).toBe(2311213n);
  });

  it("normalizes every example of every event type without throwing", () => {
    for (const name of [
      "issue_comment",
      "issues",
      "pull_request",
      "pull_request_review",
      "pull_request_review_comment",
      "push",
      "ping",
      "release",
      "workflow_run",
    ]) {
      for (const payload of examplesOf(name)) {
        const event = normalizeGitHub(githubDelivery(name, payload));
        expect(event.eventType).toBe(name);
        expect(event.subject?.ref.case).toBe("github");
      }
    }
  });
});

describe("normalizeGitHub on hostile payloads", () => {
  const hostile: Array<[string, Payload]> = [
    ["empty object", {}],
    [
      "numbers as strings",
      {
        action: 7,
        issue: { number: "12", title: 5, body: 42, author_association: ["OWNER"] },
        comment: { id: "99", body: { text: "hi" }, html_url: 1 },
        repository: { name: 1, owner: { login: 2 } },
        sender: { id: "123", login: 4, type: ["Bot"] },
        installation: { id: "5" },
      },
    ],
    [
      "arrays where objects are expected",
      { issue: [1, 2], comment: [], pull_request: ["x"], repository: [{ name: "r" }], sender: [], installation: [] },
    ],
    [
      "nulls everywhere",
      {
        action: null,
        issue: null,
        comment: null,
        review: null,
        pull_request: null,
        repository: null,
        sender: null,
        installation: null,
      },
    ],
    [
      "null nested values",
      {
        issue: { number: null, pull_request: null },
        repository: { name: null, owner: null },
        sender: { id: null, login: null },
      },
    ],
    [
      "numbers out of range",
      {
        issue: { number: -1 },
        comment: { id: 1.5 },
        repository: { name: "r", owner: { login: "o" } },
        sender: { id: Number.MAX_SAFE_INTEGER + 2 },
        installation: { id: 1e300 },
      },
    ],
    [
      "scalars where objects are expected",
      { issue: "1", comment: 3, review: true, repository: "o/r", sender: "me", installation: 0 },
    ],
  ];

  it.each(hostile)("%s: does not throw and yields well-typed, empty-ish fields", (_name, payload) => {
    const event = normalizeGitHub(githubDelivery("issue_comment", payload));
    expect(event.provider).toBe(Provider.GITHUB);
    expect(typeof event.action).toBe("string");
    expect(typeof event.text).toBe("string");
    expect(typeof event.actor?.login).toBe("string");
    expect(typeof event.actor?.id).toBe("string");
    const subject = github(event);
    expect(typeof subject.owner).toBe("string");
    expect(typeof subject.repo).toBe("string");
    expect(subject.number >= 0n).toBe(true);
    expect(subject.commentId >= 0n).toBe(true);
    expect(subject.installationId >= 0n).toBe(true);
  });

  it("ignores values of the wrong type instead of coercing them", () => {
    const [, payload] = hostile[1]!;
    const event = normalizeGitHub(githubDelivery("issue_comment", payload));
    const subject = github(event);
    expect(event.action).toBe("");
    expect(event.text).toBe("");
    expect(subject.owner).toBe("");
    expect(subject.repo).toBe("");
    expect(subject.number).toBe(0n);
    expect(subject.commentId).toBe(0n);
    expect(subject.installationId).toBe(0n);
    expect(event.subject?.key).toBe("");
    expect(event.actor?.bot).toBe(false);
    expect(event.actor?.login).toBe("");
  });

  it("gives no subject key without both owner and repository name", () => {
    const payload = { issue: { number: 3 }, repository: { name: "r" } };
    expect(normalizeGitHub(githubDelivery("issues", payload)).subject?.key).toBe("");
  });

  it("accepts the largest safe integers as ids", () => {
    const payload = {
      issue: { number: Number.MAX_SAFE_INTEGER },
      comment: { id: Number.MAX_SAFE_INTEGER },
      repository: { name: "r", owner: { login: "o" } },
    };
    const subject = github(normalizeGitHub(githubDelivery("issue_comment", payload)));
    expect(subject.number).toBe(BigInt(Number.MAX_SAFE_INTEGER));
    expect(subject.commentId).toBe(BigInt(Number.MAX_SAFE_INTEGER));
  });
});
