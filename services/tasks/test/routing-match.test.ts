import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ActorSchema,
  type Event,
  EventSchema,
  Provider,
  SubjectSchema,
} from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type Route, RouteSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { defaultRoutes } from "../src/routing/defaults.js";
import { findMention, globMatches, type MatchOptions, matchRoute } from "../src/routing/match.js";
import { renderPrompt } from "../src/routing/prompt.js";
import { validateRoute } from "../src/routing/validate.js";

/** The plain-object form of a Route, which spreads field by field. */
type RouteInit = Exclude<MessageInitShape<typeof RouteSchema>, Route>;

const OPTIONS: MatchOptions = { mention: "@hookmesh", botLogins: ["hookmesh[bot]"] };

function event(init: MessageInitShape<typeof EventSchema>): Event {
  return create(EventSchema, { deliveryId: "d-1", ...init });
}

/** What a GitHub event's author and text are; the rest is a comment on Codertocat/Hello-World#1. */
interface GitHubInit {
  text?: string;
  association?: string;
  login?: string;
  bot?: boolean;
  label?: string;
}

/**
 * A GitHub event as the contract describes it. That the gateway makes such events of real
 * deliveries, and the default rules take them, is end-to-end's to show (e2e/routing-rules.test.ts).
 */
function github(eventType: string, action: string, init: GitHubInit = {}): Event {
  return event({
    provider: Provider.GITHUB,
    eventType,
    action,
    text: init.text ?? "",
    label: init.label ?? "",
    actor: create(ActorSchema, {
      id: "21031067",
      login: init.login ?? "Codertocat",
      bot: init.bot ?? false,
      association: init.association ?? "",
    }),
    subject: create(SubjectSchema, {
      ref: { case: "github", value: { owner: "Codertocat", repo: "Hello-World", number: 1n, commentId: 492700400n } },
      key: "github:Codertocat/Hello-World#1",
      url: "https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400",
      title: "Spelling error in the README file",
    }),
  });
}

/** A comment (or review, or issue) by an author of `association`, saying `text`. */
const commentBy = (association: string, text: string): GitHubInit => ({ association, text });

function slack(eventType: string, action: string, text: string, channelId = "C024BE91L"): Event {
  return event({
    provider: Provider.SLACK,
    eventType,
    action,
    text,
    actor: create(ActorSchema, { id: "U2147483697", login: "steve" }),
    subject: create(SubjectSchema, {
      ref: { case: "slack", value: { teamId: "T061EG9R6", channelId, messageTs: "1355517523.000005" } },
      key: `slack:T061EG9R6/${channelId}/1355517523.000005`,
    }),
  });
}

function jira(eventType: string, text: string, issueKey = "PROJ-7"): Event {
  return event({
    provider: Provider.JIRA,
    eventType,
    text,
    actor: create(ActorSchema, { id: "5b10ac8d82e05b22cc7d4ef5", login: "Ada Lovelace" }),
    subject: create(SubjectSchema, {
      ref: { case: "jira", value: { siteUrl: "https://example.atlassian.net", issueKey, commentId: "10001" } },
      key: `jira:${issueKey}`,
      url: `https://example.atlassian.net/browse/${issueKey}`,
      title: "Checkout fails for guests",
    }),
  });
}

function sentry(organizationSlug: string, projectSlug: string): Event {
  return event({
    provider: Provider.SENTRY,
    eventType: "issue",
    action: "created",
    actor: create(ActorSchema, { login: "sentry" }),
    subject: create(SubjectSchema, {
      ref: { case: "sentry", value: { organizationSlug, projectSlug, issueId: "1170820242" } },
      key: "sentry:1170820242",
      title: "TypeError: Cannot read properties of undefined",
    }),
  });
}

/** A valid rule: the fields a test names over a minimal one. */
function rule(init: RouteInit): Route {
  const minimal: RouteInit = {
    trigger: { kind: { case: "mention", value: {} } },
    profile: {},
    priority: 100,
  };
  return validateRoute(create(RouteSchema, { ...minimal, ...init }));
}

function matchedId(routes: Route[], e: Event): string {
  const result = matchRoute(routes, e, OPTIONS);
  if (!result.matched) throw new Error(`expected a match, got: ${result.reason}`);
  return result.route.id;
}

function refusal(routes: Route[], e: Event): string {
  const result = matchRoute(routes, e, OPTIONS);
  if (result.matched) throw new Error(`expected no match, got ${result.route.id}`);
  return result.reason;
}

describe("default rules on GitHub events", () => {
  const defaults = defaultRoutes();

  it("a comment by the repository owner that mentions hookmesh triggers github-mention", () => {
    expect(
      matchedId(defaults, github("issue_comment", "created", commentBy("OWNER", "hey @hookmesh fix the typo"))),
    ).toBe("github-mention");
  });

  it.each(["MEMBER", "COLLABORATOR"])("so does one by a %s", (association) => {
    expect(matchedId(defaults, github("issue_comment", "created", commentBy(association, "@hookmesh fix it")))).toBe(
      "github-mention",
    );
  });

  it.each(["NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR"])(
    "one by a %s author is ignored, saying why",
    (association) => {
      const e = github("issue_comment", "created", commentBy(association, "@hookmesh fix it"));
      expect(refusal(defaults, e)).toBe(`author association ${association} may not trigger github-mention`);
    },
  );

  it("one by hookmesh's own bot account is ignored by the loop guard, whatever its association", () => {
    const e = github("issue_comment", "created", {
      ...commentBy("OWNER", "@hookmesh is working on it"),
      login: "hookmesh[bot]",
      bot: true,
    });
    expect(refusal(defaults, e)).toBe("event from hookmesh's own bot account hookmesh[bot] (loop guard)");
  });

  it("the loop guard knows a bot account by its bare name, but not a person of that name", () => {
    const bare = (bot: boolean) =>
      github("issue_comment", "created", { ...commentBy("OWNER", "@hookmesh done"), login: "HookMesh", bot });
    expect(refusal(defaults, bare(true))).toBe("event from hookmesh's own bot account HookMesh (loop guard)");
    expect(matchedId(defaults, bare(false))).toBe("github-mention");
  });

  it("a comment without a mention matches no rule", () => {
    const e = github(
      "issue_comment",
      "created",
      commentBy("OWNER", "You are totally right! I'll get this fixed right away."),
    );
    expect(refusal(defaults, e)).toBe("no rule matched");
  });

  it("editing a comment that mentions hookmesh does not trigger again", () => {
    expect(refusal(defaults, github("issue_comment", "edited", commentBy("OWNER", "@hookmesh fix it")))).toBe(
      "no rule matched",
    );
  });

  it.each([
    ["issues", "opened"],
    ["pull_request", "opened"],
    ["pull_request_review_comment", "created"],
    ["pull_request_review", "submitted"],
  ])("%s %s with a mention in its text triggers github-mention", (eventType, action) => {
    expect(matchedId(defaults, github(eventType, action, commentBy("OWNER", "@hookmesh have a look")))).toBe(
      "github-mention",
    );
  });

  it("a push matches no rule", () => {
    expect(refusal(defaults, github("push", ""))).toBe("no rule matched");
  });
});

describe("other triggers and providers", () => {
  const labelRule = rule({
    id: "triage-label",
    provider: Provider.GITHUB,
    eventTypes: ["issues"],
    actions: ["labeled"],
    trigger: { kind: { case: "label", value: { label: "Bug" } } },
  });

  const labeled = (name: string) => github("issues", "labeled", { label: name });

  it("a label trigger fires on its label, compared case-insensitively, and on no other", () => {
    expect(matchedId([labelRule], labeled("bug"))).toBe("triage-label");
    expect(refusal([labelRule], labeled("wontfix"))).toBe("no rule matched");
  });

  it("a Slack app_mention is a mention even though Slack writes it as <@U…>", () => {
    expect(matchedId(defaultRoutes(), slack("app_mention", "", "<@U0LAN0Z89> summarize this thread"))).toBe(
      "slack-mention",
    );
  });

  it("a Slack message triggers only when its text mentions the handle", () => {
    expect(matchedId(defaultRoutes(), slack("message", "", "@hookmesh is the deploy green?"))).toBe("slack-mention");
    expect(refusal(defaultRoutes(), slack("message", "", "is the deploy green?"))).toBe("no rule matched");
  });

  it("a slash command trigger fires on its command only", () => {
    const command = rule({
      id: "slack-command",
      provider: Provider.SLACK,
      trigger: { kind: { case: "slashCommand", value: { command: "/hookmesh" } } },
    });
    expect(matchedId([command], slack("slash_command", "/hookmesh", "fix the build"))).toBe("slack-command");
    expect(refusal([command], slack("slash_command", "/deploy", "fix the build"))).toBe("no rule matched");
  });

  it("a Jira comment that mentions hookmesh triggers jira-mention; association rules are GitHub's only", () => {
    expect(matchedId(defaultRoutes(), jira("comment_created", "@hookmesh please triage"))).toBe("jira-mention");
    expect(matchedId(defaultRoutes(), jira("jira:issue_created", "New bug. @hookmesh reproduce it"))).toBe(
      "jira-mention",
    );
    expect(refusal(defaultRoutes(), jira("comment_updated", "@hookmesh please triage"))).toBe("no rule matched");
  });

  it("an issue_created trigger fires on a new Sentry issue of the projects its glob names", () => {
    const alerts = rule({
      id: "sentry-new-issue",
      provider: Provider.SENTRY,
      trigger: { kind: { case: "issueCreated", value: {} } },
      subjectGlob: "acme/web-*",
    });
    expect(matchedId([alerts], sentry("acme", "web-frontend"))).toBe("sentry-new-issue");
    expect(refusal([alerts], sentry("acme", "billing"))).toBe("no rule matched");
    expect(refusal([alerts], sentry("other", "web-frontend"))).toBe("no rule matched");
  });

  it("an issue_created trigger on GitHub fires on issues opened, with no mention needed", () => {
    const newIssue = rule({
      id: "new-issue",
      provider: Provider.GITHUB,
      trigger: { kind: { case: "issueCreated", value: {} } },
    });
    expect(matchedId([newIssue], github("issues", "opened", commentBy("MEMBER", "The build is red")))).toBe(
      "new-issue",
    );
    expect(refusal([newIssue], github("issues", "labeled"))).toBe("no rule matched");
  });

  it("subject_glob on Jira matches the project key, on Slack the channel id", () => {
    const proj = rule({ id: "proj-only", provider: Provider.JIRA, subjectGlob: "PROJ" });
    expect(matchedId([proj], jira("comment_created", "@hookmesh go", "PROJ-7"))).toBe("proj-only");
    expect(refusal([proj], jira("comment_created", "@hookmesh go", "OPS-7"))).toBe("no rule matched");
    const channel = rule({ id: "one-channel", provider: Provider.SLACK, subjectGlob: "C024BE91L" });
    expect(matchedId([channel], slack("app_mention", "", "<@U0LAN0Z89> hi"))).toBe("one-channel");
    expect(refusal([channel], slack("app_mention", "", "<@U0LAN0Z89> hi", "C999"))).toBe("no rule matched");
  });

  it("a rule that allows more associations lets those authors trigger, and a refused rule does not stop a lower one", () => {
    const open = rule({
      id: "anyone",
      provider: Provider.GITHUB,
      allowedAssociations: ["NONE", "CONTRIBUTOR"],
      priority: 50,
    });
    const e = github("issue_comment", "created", commentBy("NONE", "@hookmesh please look"));
    expect(matchedId([...defaultRoutes(), open], e)).toBe("anyone");
  });

  it("a rule's own mention handle replaces the configured one", () => {
    const own = rule({
      id: "ai",
      provider: Provider.SLACK,
      trigger: { kind: { case: "mention", value: { mention: "@ai" } } },
    });
    expect(matchedId([own], slack("message", "", "@AI summarize"))).toBe("ai");
    expect(refusal([own], slack("message", "", "@hookmesh summarize"))).toBe("no rule matched");
    expect(refusal([own], slack("app_mention", "", "<@U0LAN0Z89> summarize"))).toBe("no rule matched");
  });
});

describe("mention matching", () => {
  it.each([
    "hey @hookmesh fix",
    "@HookMesh: do it",
    "(@hookmesh)",
    "thanks @hookmesh.",
    "first line\n@hookmesh second",
  ])("finds @hookmesh in %j", (text) => {
    expect(findMention(text, "@hookmesh")).toBeDefined();
  });

  it.each([
    "@hookmesh-bot fix",
    "email@hookmeshx",
    "mail me at someone@hookmesh",
    "@hookmeshx",
    "see @hookmesh.io",
    "@hookmesh_ci",
  ])("does not find @hookmesh in %j", (text) => {
    expect(findMention(text, "@hookmesh")).toBeUndefined();
  });

  it("reports where the mention is", () => {
    expect(findMention("hey @HookMesh fix", "@hookmesh")).toEqual({ index: 4, length: 9 });
  });
});

describe("subject globs", () => {
  it.each([
    ["octo/*", "octo/hello", true],
    ["octo/*", "Octo/Hello", true],
    ["*/hello", "octo/hello", true],
    ["octo/hello-*", "octo/hello-world", true],
    ["octo/hello-*", "octo/hello", false],
    ["*", "C024BE91L", true],
    ["*", "octo/hello", false],
    ["octo*", "octo/hello", false],
    ["octo**", "octo/hello", true],
    ["**", "octo/hello", true],
    ["octo/a.b", "octo/aXb", false],
    ["**", "", false],
  ])("%s against %j: %s", (glob, place, expected) => {
    expect(globMatches(glob, place)).toBe(expected);
  });

  it("a rule with a glob never matches a subject that has no place", () => {
    const scoped = rule({ id: "scoped", provider: Provider.SLACK, subjectGlob: "**" });
    expect(refusal([scoped], event({ provider: Provider.SLACK, eventType: "app_mention" }))).toBe("no rule matched");
  });
});

describe("rule order", () => {
  const low = rule({ id: "low", provider: Provider.SLACK, priority: 100 });
  const high = rule({ id: "high", provider: Provider.SLACK, priority: 200 });
  const e = slack("app_mention", "", "<@U0LAN0Z89> hi");

  it("the highest priority wins, whatever the order of the list", () => {
    expect(matchedId([low, high], e)).toBe("high");
    expect(matchedId([high, low], e)).toBe("high");
  });

  it("equal priorities resolve by id", () => {
    const b = rule({ id: "b-rule", provider: Provider.SLACK });
    const a = rule({ id: "a-rule", provider: Provider.SLACK });
    expect(matchedId([b, a], e)).toBe("a-rule");
  });

  it("a disabled rule is skipped; with every rule disabled nothing matches", () => {
    const disabledHigh = rule({ id: "high", provider: Provider.SLACK, priority: 200, disabled: true });
    expect(matchedId([low, disabledHigh], e)).toBe("low");
    expect(refusal([rule({ id: "low", provider: Provider.SLACK, disabled: true }), disabledHigh], e)).toBe(
      "no rule matched",
    );
  });
});

describe("prompts", () => {
  const [githubMention] = defaultRoutes();

  it("without a template: the text after the mention, then the subject's context", () => {
    const body = "Looks wrong.\n\n@hookmesh: fix the spelling\nin the README ";
    const e = github("issue_comment", "created", commentBy("OWNER", body));
    expect(renderPrompt(githubMention!, e, "@hookmesh")).toBe(
      [
        "fix the spelling\nin the README",
        "",
        "Context:",
        "Provider: github",
        "Event: issue_comment created",
        "Subject: github:Codertocat/Hello-World#1",
        "Title: Spelling error in the README file",
        "URL: https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400",
        "Asked by: Codertocat",
      ].join("\n"),
    );
  });

  it("a mention at the end asks for what came before it", () => {
    const e = slack("message", "", "Can you summarize this thread, @hookmesh");
    expect(renderPrompt(defaultRoutes()[2]!, e, "@hookmesh").split("\n")[0]).toBe("Can you summarize this thread");
  });

  it("a Slack app_mention's request follows Slack's <@U…> mention", () => {
    const e = slack("app_mention", "", "<@U0LAN0Z89> summarize this thread");
    expect(renderPrompt(defaultRoutes()[2]!, e, "@hookmesh").split("\n")[0]).toBe("summarize this thread");
  });

  it("a template is filled from the event", () => {
    const templated = rule({
      id: "templated",
      provider: Provider.JIRA,
      profile: {
        promptTemplate:
          "{{ actor }} asks on {{subject.key}} ({{subject.title}}, {{subject.url}}) " +
          "via {{provider}} {{event_type}}{{action}}{{label}}: {{text}}",
      },
    });
    const e = jira("comment_created", "[~accountid:1] @hookmesh reproduce the checkout bug");
    expect(renderPrompt(templated, e, "@hookmesh")).toBe(
      "Ada Lovelace asks on jira:PROJ-7 (Checkout fails for guests, https://example.atlassian.net/browse/PROJ-7) " +
        "via jira comment_created: reproduce the checkout bug",
    );
  });

  it("for other triggers {{text}} is the whole text", () => {
    const command = rule({
      id: "slack-command",
      provider: Provider.SLACK,
      trigger: { kind: { case: "slashCommand", value: { command: "/hookmesh" } } },
      profile: { promptTemplate: "{{text}}" },
    });
    expect(renderPrompt(command, slack("slash_command", "/hookmesh", "  fix the build "), "@hookmesh")).toBe(
      "fix the build",
    );
  });

  it("unknown placeholders are refused when the rule is written, naming them", () => {
    const template = "{{repo}} {{ text }} {{ issue }}";
    expect(() => rule({ id: "bad", provider: Provider.JIRA, profile: { promptTemplate: template } })).toThrow(
      "route.profile.prompt_template: unknown placeholder {{repo}}, {{issue}}; known: text, event_type, action, actor, " +
        "subject.key, subject.title, subject.url, provider, label",
    );
  });
});
