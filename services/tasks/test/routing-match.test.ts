import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ActorSchema,
  type Event,
  EventSchema,
  Provider,
  SubjectSchema,
} from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  type Route,
  RouteSchema,
  type TriggerGate,
  TriggerGateSchema,
} from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { defaultRoutes } from "../src/routing/defaults.js";
import {
  findMention,
  globMatches,
  type MatchFacts,
  type MatchOptions,
  matchRoute,
  needsJiraGroups,
  needsLabeler,
} from "../src/routing/match.js";
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

/**
 * Gates that let the fixtures' workspace, projects and organizations through, for the tests of
 * triggers; the gates themselves have their own tests below.
 */
const OPEN_GATES: Partial<Record<Provider, TriggerGate>> = {
  [Provider.SLACK]: create(TriggerGateSchema, { provider: { case: "slack", value: { teamIds: ["T061EG9R6"] } } }),
  [Provider.JIRA]: create(TriggerGateSchema, { provider: { case: "jira", value: { projectKeys: ["PROJ", "OPS"] } } }),
  [Provider.SENTRY]: create(TriggerGateSchema, {
    provider: { case: "sentry", value: { organizations: ["acme", "other"] } },
  }),
};

/** The rules with the open gates where they have none. */
function opened(routes: Route[]): Route[] {
  return routes.map((route) => {
    const gate = route.gate ?? OPEN_GATES[route.provider];
    return gate ? { ...route, gate } : route;
  });
}

/** A valid rule: the fields a test names over a minimal one (with an open gate unless it names one). */
function rule(init: RouteInit): Route {
  const minimal: RouteInit = {
    trigger: { kind: { case: "mention", value: {} } },
    profile: {},
    priority: 100,
  };
  const route = validateRoute(create(RouteSchema, { ...minimal, ...init }));
  return "gate" in init ? route : opened([route])[0]!;
}

function matchedId(routes: Route[], e: Event, facts?: MatchFacts): string {
  const result = matchRoute(routes, e, OPTIONS, facts);
  if (!result.matched) throw new Error(`expected a match, got: ${result.reason}`);
  return result.route.id;
}

function refusal(routes: Route[], e: Event, facts?: MatchFacts): string {
  const result = matchRoute(routes, e, OPTIONS, facts);
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
    expect(matchedId([labelRule], labeled("bug"), { labeler: { association: "COLLABORATOR" } })).toBe("triage-label");
    expect(refusal([labelRule], labeled("wontfix"), { labeler: { association: "COLLABORATOR" } })).toBe(
      "no rule matched",
    );
  });

  it("a Slack app_mention is a mention even though Slack writes it as <@U…>", () => {
    expect(matchedId(opened(defaultRoutes()), slack("app_mention", "", "<@U0LAN0Z89> summarize this thread"))).toBe(
      "slack-mention",
    );
  });

  it("a Slack message triggers only when its text mentions the handle", () => {
    expect(matchedId(opened(defaultRoutes()), slack("message", "", "@hookmesh is the deploy green?"))).toBe(
      "slack-mention",
    );
    expect(refusal(opened(defaultRoutes()), slack("message", "", "is the deploy green?"))).toBe("no rule matched");
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
    expect(matchedId(opened(defaultRoutes()), jira("comment_created", "@hookmesh please triage"))).toBe("jira-mention");
    expect(matchedId(opened(defaultRoutes()), jira("jira:issue_created", "New bug. @hookmesh reproduce it"))).toBe(
      "jira-mention",
    );
    expect(refusal(opened(defaultRoutes()), jira("comment_updated", "@hookmesh please triage"))).toBe(
      "no rule matched",
    );
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

describe("trigger gates", () => {
  const slackRule = (gate: { teamIds?: string[]; channelIds?: string[]; userIds?: string[] }) =>
    rule({ id: "slack-gated", provider: Provider.SLACK, gate: { provider: { case: "slack", value: gate } } });
  const jiraRule = (gate: { projectKeys?: string[]; accountIds?: string[]; groups?: string[]; allowApps?: boolean }) =>
    rule({ id: "jira-gated", provider: Provider.JIRA, gate: { provider: { case: "jira", value: gate } } });
  const mention = slack("app_mention", "", "<@U0LAN0Z89> summarize this thread");
  /** `e` (a copy), as if a bot had sent it. */
  const byBot = (e: Event, login = "deploy-bot") =>
    create(EventSchema, { ...e, actor: create(ActorSchema, { id: "B0123", login, bot: true }) });

  it("a Slack bot's message never triggers, even on a rule open to its workspace", () => {
    expect(refusal([slackRule({ teamIds: ["T061EG9R6"] })], byBot(mention))).toBe(
      "Slack bot deploy-bot never triggers",
    );
  });

  it("the default Slack and Jira rules are closed until their gate names someone, and say how to open them", () => {
    expect(refusal(defaultRoutes(), mention)).toBe(
      "slack-mention is closed: its gate.slack names no team_ids, channel_ids or user_ids",
    );
    expect(refusal(defaultRoutes(), jira("comment_created", "@hookmesh please triage"))).toBe(
      "jira-mention is closed: its gate.jira names no project_keys, account_ids or groups",
    );
  });

  it("a Slack gate lets through only its workspaces, channels and users, each list it sets", () => {
    expect(matchedId([slackRule({ teamIds: ["T061EG9R6"] })], mention)).toBe("slack-gated");
    expect(refusal([slackRule({ teamIds: ["T999"] })], mention)).toBe(
      "workspace T061EG9R6 is not in gate.slack.team_ids of slack-gated",
    );
    expect(matchedId([slackRule({ channelIds: ["C024BE91L"], userIds: ["U2147483697"] })], mention)).toBe(
      "slack-gated",
    );
    expect(refusal([slackRule({ channelIds: ["C024BE91L"], userIds: ["U0OTHER"] })], mention)).toBe(
      "user U2147483697 is not in gate.slack.user_ids of slack-gated",
    );
    expect(refusal([slackRule({ channelIds: ["C0OTHER"] })], mention)).toBe(
      "channel C024BE91L is not in gate.slack.channel_ids of slack-gated",
    );
    const guest = create(EventSchema, {
      ...mention,
      actor: create(ActorSchema, { id: "U0GUEST", login: "guest", teamId: "T0PARTNER" }),
    });
    expect(refusal([slackRule({ teamIds: ["T061EG9R6"] })], guest)).toBe(
      "user's workspace T0PARTNER is not in gate.slack.team_ids of slack-gated",
    );
  });

  it("a Jira gate lets through its accounts and projects; app accounts only when it allows apps", () => {
    const comment = jira("comment_created", "@hookmesh please triage");
    expect(matchedId([jiraRule({ accountIds: ["5b10ac8d82e05b22cc7d4ef5"] })], comment)).toBe("jira-gated");
    expect(refusal([jiraRule({ accountIds: ["557058:someone-else"] })], comment)).toBe(
      "account 5b10ac8d82e05b22cc7d4ef5 is not in gate.jira.account_ids of jira-gated",
    );
    expect(matchedId([jiraRule({ projectKeys: ["proj"] })], comment)).toBe("jira-gated");
    expect(refusal([jiraRule({ projectKeys: ["OPS"] })], comment)).toBe(
      "project PROJ is not in gate.jira.project_keys of jira-gated",
    );
    const automation = byBot(jira("comment_created", "@hookmesh please triage"), "Automation for Jira");
    expect(refusal([jiraRule({ projectKeys: ["PROJ"] })], automation)).toBe(
      "app account Automation for Jira may not trigger jira-gated (gate.jira.allow_apps is off)",
    );
    expect(matchedId([jiraRule({ projectKeys: ["PROJ"], allowApps: true })], automation)).toBe("jira-gated");
  });

  it("a Jira gate by group lets through members of its groups or its listed accounts, and refuses when the groups are unknown", () => {
    const comment = jira("comment_created", "@hookmesh please triage");
    const byGroup = jiraRule({ groups: ["Developers"], accountIds: ["557058:lead"] });
    expect(needsJiraGroups([byGroup], comment, "@hookmesh")).toBe(true);
    expect(needsJiraGroups([jiraRule({ accountIds: ["557058:lead"] })], comment, "@hookmesh")).toBe(false);
    expect(matchedId([byGroup], comment, { jiraGroups: { groups: ["jira-users", "developers"] } })).toBe("jira-gated");
    expect(refusal([byGroup], comment, { jiraGroups: { groups: ["jira-users"] } })).toBe(
      "account 5b10ac8d82e05b22cc7d4ef5 is in none of gate.jira.groups of jira-gated nor in its account_ids",
    );
    expect(
      refusal([byGroup], comment, { jiraGroups: { unknown: "the jira service could not read them (Unavailable)" } }),
    ).toBe(
      "account 5b10ac8d82e05b22cc7d4ef5 is not in gate.jira.account_ids of jira-gated, and its groups are unknown: the jira service could not read them (Unavailable)",
    );
    const lead = jira("comment_created", "@hookmesh please triage");
    lead.actor!.id = "557058:lead";
    expect(matchedId([byGroup], lead)).toBe("jira-gated");
  });

  it("a Sentry gate matches organizations and projects; a comment, which names no organization, passes only a project list", () => {
    const sentryRule = (gate: { organizations?: string[]; projects?: string[] }) =>
      rule({
        id: "sentry-gated",
        provider: Provider.SENTRY,
        trigger: { kind: { case: "issueCreated", value: {} } },
        gate: { provider: { case: "sentry", value: gate } },
      });
    expect(matchedId([sentryRule({ organizations: ["acme"] })], sentry("acme", "web"))).toBe("sentry-gated");
    expect(refusal([sentryRule({ organizations: ["acme"] })], sentry("evil", "web"))).toBe(
      "organization evil is not in gate.sentry.organizations of sentry-gated",
    );
    expect(refusal([sentryRule({})], sentry("acme", "web"))).toBe(
      "sentry-gated is closed: its gate.sentry names no organizations or projects",
    );
    const commentRule = (gate: { organizations?: string[]; projects?: string[] }) =>
      rule({ id: "sentry-comment", provider: Provider.SENTRY, gate: { provider: { case: "sentry", value: gate } } });
    const comment = sentry("", "web");
    comment.eventType = "comment";
    comment.text = "@hookmesh why?";
    comment.actor = create(ActorSchema, { id: "1", login: "Ada", bot: false });
    expect(refusal([commentRule({ organizations: ["acme"], projects: ["web"] })], comment)).toBe(
      "sentry-comment allows only listed organizations (gate.sentry.organizations), and this comment names none",
    );
    expect(matchedId([commentRule({ projects: ["web"] })], comment)).toBe("sentry-comment");
  });

  it("Sentry's own actor creates issues; another integration triggers only where the gate allows apps", () => {
    const newIssue = (allowApps: boolean) =>
      rule({
        id: "sentry-new",
        provider: Provider.SENTRY,
        trigger: { kind: { case: "issueCreated", value: {} } },
        gate: { provider: { case: "sentry", value: { projects: ["web"], allowApps } } },
      });
    const bySentry = sentry("acme", "web");
    bySentry.actor = create(ActorSchema, { id: "sentry", login: "Sentry", bot: true });
    expect(matchedId([newIssue(false)], bySentry)).toBe("sentry-new");
    const byIntegration = byBot(sentry("acme", "web"), "some-integration");
    expect(refusal([newIssue(false)], byIntegration)).toBe(
      "integration some-integration may not trigger sentry-new (gate.sentry.allow_apps is off)",
    );
    expect(matchedId([newIssue(true)], byIntegration)).toBe("sentry-new");
  });

  it("a GitHub bot triggers only a rule whose gate allows bots, and still needs an allowed association", () => {
    const dependabot = github("issue_comment", "created", {
      text: "@hookmesh rebase",
      association: "MEMBER",
      login: "dependabot[bot]",
      bot: true,
    });
    expect(refusal(defaultRoutes(), dependabot)).toBe(
      "bot dependabot[bot] may not trigger github-mention (gate.github.allow_bots is off)",
    );
    const bots = rule({
      id: "bots",
      provider: Provider.GITHUB,
      gate: { provider: { case: "github", value: { allowBots: true } } },
    });
    expect(matchedId([bots], dependabot)).toBe("bots");
    dependabot.actor!.association = "NONE";
    expect(refusal([bots], dependabot)).toBe("author association NONE may not trigger bots");
  });

  it("a GitHub label rule goes by the labeler's permission, not by the payload's (the issue author's) association", () => {
    const labelRule = rule({
      id: "fix-label",
      provider: Provider.GITHUB,
      trigger: { kind: { case: "label", value: { label: "hookmesh" } } },
    });
    const labeled = github("issues", "labeled", { label: "hookmesh", association: "OWNER", login: "drive-by" });
    expect(needsLabeler([labelRule], labeled, "@hookmesh")).toBe(true);
    expect(needsLabeler(defaultRoutes(), labeled, "@hookmesh")).toBe(false);
    expect(matchedId([labelRule], labeled, { labeler: { association: "COLLABORATOR" } })).toBe("fix-label");
    expect(refusal([labelRule], labeled, { labeler: { association: "NONE" } })).toBe(
      "labeler drive-by (permission as NONE) may not trigger fix-label",
    );
    expect(
      refusal([labelRule], labeled, {
        labeler: { unknown: "the github service could not check their permission (Unavailable)" },
      }),
    ).toBe(
      "labeler drive-by may not trigger fix-label: the github service could not check their permission (Unavailable)",
    );
    expect(refusal([labelRule], labeled)).toBe(
      "labeler drive-by may not trigger fix-label: their permission was not checked",
    );
  });

  it("a gate must be of its rule's provider, and its ids must look like the provider's", () => {
    const invalid = (init: RouteInit) => {
      try {
        validateRoute(create(RouteSchema, { trigger: { kind: { case: "mention", value: {} } }, profile: {}, ...init }));
      } catch (err) {
        return (err as Error).message;
      }
      return "valid";
    };
    expect(
      invalid({
        id: "x",
        provider: Provider.SLACK,
        gate: { provider: { case: "jira", value: { projectKeys: ["P"] } } },
      }),
    ).toMatch(/route\.gate\.jira.*use gate\.slack/);
    expect(
      invalid({
        id: "x",
        provider: Provider.SLACK,
        gate: { provider: { case: "slack", value: { userIds: ["u 1"] } } },
      }),
    ).toMatch(/route\.gate\.slack\.user_ids\[0\]/);
    expect(
      invalid({
        id: "x",
        provider: Provider.JIRA,
        gate: { provider: { case: "jira", value: { projectKeys: ["PROJ"] } } },
      }),
    ).toBe("valid");
    const groups = (names: string[]) =>
      invalid({ id: "x", provider: Provider.JIRA, gate: { provider: { case: "jira", value: { groups: names } } } });
    expect(groups(["  "])).toMatch(/route\.gate\.jira\.groups\[0\]: must be a Jira group name/);
    expect(groups(["Jira Developers (EU)"])).toBe("valid");
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
