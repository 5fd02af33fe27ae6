import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { serverCallInterceptor } from "@hookmesh/kit";
import { callError, memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ActorSchema, EventSchema, Provider, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { AgentNetwork, type Route, RouteSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { Router } from "../src/routing/router.js";
import { RoutingRuleStore } from "../src/routing/routing-rule-store.js";
import { routeServiceRoutes } from "../src/routing-rule-routes.js";
import { mapTasksError } from "../src/server.js";

/** The plain-object form of a Route, which spreads field by field. */
type RouteInit = Exclude<MessageInitShape<typeof RouteSchema>, Route>;

const NOW = new Date("2024-05-01T12:00:00Z");

const mention: RouteInit["trigger"] = { kind: { case: "mention", value: {} } };

function route(init: RouteInit = {}): Route {
  const triage: RouteInit = {
    id: "github-triage",
    description: "Triage new issues",
    provider: Provider.GITHUB,
    eventTypes: ["issues"],
    actions: ["opened"],
    trigger: { kind: { case: "issueCreated", value: {} } },
    subjectGlob: "octo/*",
    profile: { runner: "claude", model: "sonnet", maxRunTime: { seconds: 600n }, maxCostUsd: 2 },
    priority: 300,
  };
  return create(RouteSchema, { ...triage, ...init });
}

describe("RouteService", () => {
  let db: TestRedis;
  let store: RoutingRuleStore;
  let client: Client<typeof RouteService>;

  beforeEach(async () => {
    db = await testRedis("tasks-route-service");
    store = new RoutingRuleStore(db.redis, { keyPrefix: db.prefix, now: () => NOW });
    const { logger } = memoryLogger("route-service-test");
    const transport = createRouterTransport(routeServiceRoutes(store), {
      router: { interceptors: [serverCallInterceptor(logger, mapTasksError)] },
    });
    client = createClient(RouteService, transport);
  });
  afterEach(() => db.cleanup());

  describe("list, get, upsert, delete", () => {
    it("stores a rule with its update time and returns it as stored", async () => {
      const { route: stored } = await client.upsertRoute({ route: route() });
      expect(stored).toEqual({ ...route(), updateTime: timestampFromDate(NOW) });
      expect((await client.getRoute({ id: "github-triage" })).route).toEqual(stored);
    });

    it("lists highest priority first, then by id", async () => {
      for (const [id, priority] of [
        ["b", 100],
        ["c", 500],
        ["a", 100],
      ] as const) {
        await client.upsertRoute({ route: route({ id, priority }) });
      }
      expect((await client.listRoutes({})).routes.map((r) => r.id)).toEqual(["c", "a", "b"]);
    });

    it("replaces a rule by id", async () => {
      await client.upsertRoute({ route: route() });
      await client.upsertRoute({ route: route({ description: "changed", disabled: true }) });
      const { routes } = await client.listRoutes({});
      expect(routes).toHaveLength(1);
      expect(routes[0]).toMatchObject({ description: "changed", disabled: true });
    });

    it("deletes a rule; getting or deleting it again is NOT_FOUND", async () => {
      await client.upsertRoute({ route: route() });
      await client.deleteRoute({ id: "github-triage" });
      expect((await client.listRoutes({})).routes).toEqual([]);
      for (const call of [client.getRoute({ id: "github-triage" }), client.deleteRoute({ id: "github-triage" })]) {
        const err = await callError(call);
        expect(err.code).toBe(Code.NotFound);
        expect(err.rawMessage).toBe("route github-triage not found");
      }
    });

    it("getting or deleting without an id is INVALID_ARGUMENT", async () => {
      for (const call of [client.getRoute({ id: "" }), client.deleteRoute({ id: "" })]) {
        const err = await callError(call);
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.rawMessage).toBe("id: is required");
      }
    });
  });

  describe("validation errors name the field", () => {
    it.each<[string, Route | undefined, string]>([
      ["no route", undefined, "route: is required"],
      ["no id", route({ id: "" }), "route.id: is required"],
      ["a bad id", route({ id: "has space" }), "route.id: must match [A-Za-z0-9_-]{1,64}"],
      ["no provider", route({ provider: Provider.UNSPECIFIED }), "route.provider: is required"],
      ["an unknown provider", route({ provider: 42 as Provider }), "route.provider: must be a known provider"],
      ["an empty event type", route({ eventTypes: ["issues", " "] }), "route.event_types[1]: must not be empty"],
      ["no trigger", route({ trigger: undefined }), "route.trigger: is required"],
      ["an empty trigger", route({ trigger: {} }), "route.trigger: is required"],
      [
        "a label trigger without a label",
        route({ trigger: { kind: { case: "label", value: { label: "" } } } }),
        "route.trigger.label.label: is required",
      ],
      [
        "a slash command outside Slack",
        route({ trigger: { kind: { case: "slashCommand", value: { command: "/hookmesh" } } } }),
        "route.trigger.slash_command: applies only to PROVIDER_SLACK",
      ],
      [
        "a slash command without its slash",
        route({
          provider: Provider.SLACK,
          trigger: { kind: { case: "slashCommand", value: { command: "hookmesh" } } },
        }),
        'route.trigger.slash_command.command: must be "/" followed by a name, e.g. "/hookmesh"',
      ],
      [
        "a mention with a space",
        route({ trigger: { kind: { case: "mention", value: { mention: "@hook mesh" } } } }),
        "route.trigger.mention.mention: must not contain whitespace",
      ],
      ["an empty glob segment", route({ subjectGlob: "octo//x" }), "route.subject_glob: must not have empty segments"],
      [
        "a glob character class",
        route({ subjectGlob: "octo/[ab]" }),
        "route.subject_glob: may contain only letters, digits, '.', '_', '-', '/' and the wildcards * and **",
      ],
      [
        "a triple star",
        route({ subjectGlob: "octo/***" }),
        "route.subject_glob: has *** where * (within a segment) or ** (across) was meant",
      ],
      ["no profile", route({ profile: undefined }), "route.profile: is required"],
      [
        "an unknown runner",
        route({ profile: { runner: "codex" } }),
        `route.profile.runner: must be "claude", "command" or empty (the worker's default)`,
      ],
      [
        "a negative run time",
        route({ profile: { maxRunTime: { seconds: -5n } } }),
        "route.profile.max_run_time: must not be negative (0 or unset means the worker's default)",
      ],
      [
        "a negative cost cap",
        route({ profile: { maxCostUsd: -1 } }),
        "route.profile.max_cost_usd: must be 0 (the service default) or a positive number of US dollars",
      ],
      [
        "a daily budget that is not a number",
        route({ budget: { maxCostUsdPerDay: Number.NaN } }),
        "route.budget.max_cost_usd_per_day: must be 0 (the service default) or a positive number of US dollars",
      ],
      [
        "a daily budget beside unlimited_per_day",
        route({ budget: { maxCostUsdPerDay: 5, unlimitedPerDay: true } }),
        "route.budget.max_cost_usd_per_day: must be 0 when unlimited_per_day is set",
      ],
      [
        "a bad environment variable name",
        route({ profile: { allowedEnv: ["HOME", "GITHUB TOKEN"] } }),
        "route.profile.allowed_env[1]: must be an environment variable name",
      ],
      [
        "an unknown network",
        route({ profile: { network: 7 as AgentNetwork } }),
        "route.profile.network: must be AGENT_NETWORK_NONE, AGENT_NETWORK_EGRESS or AGENT_NETWORK_HOST",
      ],
      [
        "egress hosts without the egress network",
        route({ profile: { egressHosts: ["github.com"] } }),
        "route.profile.egress_hosts: is only read with network AGENT_NETWORK_EGRESS",
      ],
      [
        "the egress network without hosts",
        route({ profile: { network: AgentNetwork.EGRESS } }),
        "route.profile.egress_hosts: must name at least one host for network AGENT_NETWORK_EGRESS",
      ],
      [
        "an egress host with a scheme",
        route({ profile: { network: AgentNetwork.EGRESS, egressHosts: ["api.anthropic.com", "https://github.com"] } }),
        "route.profile.egress_hosts[1]: must be a lowercase host name, `*.` and a host name, or an IPv4 address",
      ],
      [
        "an unknown permission mode",
        route({ profile: { permissionMode: "yolo" } }),
        "route.profile.permission_mode: must be empty (acceptEdits) or one of default, acceptEdits, plan, dontAsk, bypassPermissions, auto",
      ],
      [
        "a repository on a GitHub rule",
        route({ profile: { workspace: { enabled: true, repository: { owner: "octo", repo: "hello" } } } }),
        "route.profile.workspace.repository: is not read on GitHub rules: their events name the repository (and pull request) to check out",
      ],
      [
        "a Jira workspace that names no repository",
        route({
          provider: Provider.JIRA,
          trigger: mention,
          subjectGlob: "",
          profile: { workspace: { enabled: true } },
        }),
        "route.profile.workspace: must name a repository or repositories to check out for this provider",
      ],
      [
        "a repository name that is a path",
        route({
          provider: Provider.SENTRY,
          trigger: mention,
          subjectGlob: "",
          profile: { workspace: { enabled: true, repository: { owner: "octo", repo: "../etc" } } },
        }),
        "route.profile.workspace.repository.repo: must be a GitHub repository name",
      ],
      [
        "a ref that git would read as an option",
        route({
          provider: Provider.SLACK,
          trigger: mention,
          subjectGlob: "",
          profile: {
            workspace: { enabled: true, repository: { owner: "octo", repo: "hello", ref: "--upload-pack=x" } },
          },
        }),
        "route.profile.workspace.repository.ref: must be a branch, tag, full ref or commit SHA (letters, digits, ., _, -, /)",
      ],
      [
        "a mapping key twice",
        route({
          provider: Provider.JIRA,
          trigger: mention,
          subjectGlob: "",
          profile: {
            workspace: {
              enabled: true,
              repositories: [
                { key: "PROJ", repository: { owner: "octo", repo: "a" } },
                { key: "PROJ", repository: { owner: "octo", repo: "b" } },
              ],
            },
          },
        }),
        'route.profile.workspace.repositories[1].key: repeats "PROJ"',
      ],
      [
        "a config bundle that is a path",
        route({ profile: { workspace: { enabled: true, configBundle: "../secrets" } } }),
        "route.profile.workspace.config_bundle: must be a directory name: letters, digits, -, _ and .",
      ],
      ["a priority over 1000", route({ priority: 1001 }), "route.priority: must be from 0 to 1000"],
      ["a negative priority", route({ priority: -1 }), "route.priority: must be from 0 to 1000"],
      [
        "a lower-case association",
        route({ allowedAssociations: ["owner"] }),
        "route.allowed_associations[0]: must be one of OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, " +
          "FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, MANNEQUIN, NONE",
      ],
      [
        "too many attempts",
        route({ maxAttempts: 101 }),
        "route.max_attempts: must be from 0 to 100 (0 means the service default)",
      ],
    ])("%s", async (_, invalid, message) => {
      const err = await callError(client.upsertRoute({ route: invalid }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toBe(message);
      expect((await client.listRoutes({})).routes).toEqual([]);
    });
  });

  describe("seeding from YAML", () => {
    const FILE = `
# Routes in the proto JSON shape: camelCase or proto field names.
- id: sentry-alerts
  provider: PROVIDER_SENTRY
  trigger: { issueCreated: {} }
  subject_glob: acme/*
  profile: { runner: command, maxRunTime: 600s, max_cost_usd: 1.5, allowedEnv: [SENTRY_TOKEN] }
  priority: 400
- id: ops-mention
  provider: PROVIDER_SLACK
  eventTypes: [app_mention]
  trigger: { mention: { mention: "@ops-bot" } }
  profile: { promptTemplate: "{{actor}} asks: {{text}}" }
`;

    it("upserts every rule of the file", async () => {
      const written = await store.seedFromYaml(FILE);
      expect(written.map((r) => r.id)).toEqual(["sentry-alerts", "ops-mention"]);
      const { routes } = await client.listRoutes({});
      expect(routes.map((r) => r.id)).toEqual(["sentry-alerts", "ops-mention"]);
      expect(routes[0]).toMatchObject({
        provider: Provider.SENTRY,
        trigger: { kind: { case: "issueCreated" } },
        subjectGlob: "acme/*",
        profile: { runner: "command", maxRunTime: { seconds: 600n }, maxCostUsd: 1.5, allowedEnv: ["SENTRY_TOKEN"] },
        priority: 400,
        updateTime: timestampFromDate(NOW),
      });
      expect(routes[1]).toMatchObject({
        trigger: { kind: { case: "mention", value: { mention: "@ops-bot" } } },
        profile: { promptTemplate: "{{actor}} asks: {{text}}" },
      });
    });

    it("opens the default Slack and Jira rules with the README's file", async () => {
      await store.seedDefaults();
      await store.seedFromYaml(`
- id: slack-mention
  provider: PROVIDER_SLACK
  eventTypes: [app_mention, message]
  trigger: { mention: {} }
  gate: { slack: { teamIds: [T061EG9R6] } }
  profile: {}
  priority: 100
- id: jira-mention
  provider: PROVIDER_JIRA
  eventTypes: [comment_created, "jira:issue_created"]
  trigger: { mention: {} }
  gate: { jira: { projectKeys: [PROJ], accountIds: ["5b10ac8d82e05b22cc7d4ef5"] } }
  profile: {}
  priority: 100
`);
      expect((await client.getRoute({ id: "slack-mention" })).route?.gate?.provider).toEqual({
        case: "slack",
        value: expect.objectContaining({ teamIds: ["T061EG9R6"], channelIds: [], userIds: [] }),
      });
      expect((await client.getRoute({ id: "jira-mention" })).route?.gate?.provider).toEqual({
        case: "jira",
        value: expect.objectContaining({ projectKeys: ["PROJ"], accountIds: ["5b10ac8d82e05b22cc7d4ef5"] }),
      });
    });

    it("replaces stored rules of the same id, and an empty file changes nothing", async () => {
      await client.upsertRoute({ route: route({ id: "ops-mention", priority: 1 }) });
      await store.seedFromYaml(FILE);
      expect((await client.getRoute({ id: "ops-mention" })).route?.provider).toBe(Provider.SLACK);
      expect(await store.seedFromYaml("# nothing yet\n")).toEqual([]);
      expect((await client.listRoutes({})).routes).toHaveLength(2);
    });

    it.each([
      [
        "a rule that fails validation",
        `${FILE}- id: broken\n  provider: PROVIDER_GITHUB\n  profile: {}\n`,
        "routes[2].trigger: is required",
      ],
      [
        "a provider that is not an enum value",
        "- id: x\n  provider: github\n",
        "routes[0].provider: must be one of PROVIDER_GITHUB, PROVIDER_SLACK, PROVIDER_JIRA, PROVIDER_SENTRY, PROVIDER_CUSTOM",
      ],
      [
        "an undecodable nested value",
        "- id: x\n  profile: { maxRunTime: ten minutes }\n",
        'routes[0].profile.max_run_time: cannot decode message google.protobuf.Duration from JSON: "ten minutes"',
      ],
      [
        "an unknown nested field",
        "- id: x\n  trigger: { mention: { handle: '@x' } }\n",
        "routes[0].trigger.mention.handle: is not a field of hookmesh.tasks.v1.MentionTrigger",
      ],
      [
        "two kinds of trigger",
        "- id: x\n  trigger: { mention: {}, label: { label: bug } }\n",
        "routes[0].trigger: cannot decode oneof hookmesh.tasks.v1.Trigger.kind from JSON: " +
          "oneof set multiple times by mention and label",
      ],
      ["an entry that is not a mapping", "- just-a-string\n", "routes[0]: must be a mapping of route fields"],
      [
        "a repeated id",
        `${FILE}- { id: sentry-alerts, provider: PROVIDER_JIRA, trigger: { mention: {} }, profile: {} }\n`,
        'routes[2].id: repeats routes[0].id "sentry-alerts"',
      ],
      ["a file that is not a list", "id: x\nprovider: PROVIDER_GITHUB\n", "routes: must be a list of routes"],
    ])("refuses %s, naming the entry and field, and writes nothing", async (_, text, message) => {
      await expect(store.seedFromYaml(text)).rejects.toThrow(message);
      expect(await store.list()).toEqual([]);
    });

    it("refuses a file that is not YAML", async () => {
      await expect(store.seedFromYaml("- id: [unclosed\n")).rejects.toThrow(/^routes: is not valid YAML: /);
    });
  });

  describe("default rules", () => {
    it("are seeded once, so that an operator's deletion or edit survives restarts", async () => {
      expect(await store.seedDefaults()).toBe(true);
      expect((await client.listRoutes({})).routes.map((r) => r.id)).toEqual([
        "github-mention",
        "jira-mention",
        "slack-mention",
      ]);

      await client.deleteRoute({ id: "github-mention" });
      const slack = (await client.getRoute({ id: "slack-mention" })).route!;
      await client.upsertRoute({ route: { ...slack, disabled: true } });

      expect(await store.seedDefaults()).toBe(false);
      expect((await client.listRoutes({})).routes.map((r) => r.id)).toEqual(["jira-mention", "slack-mention"]);
      expect((await client.getRoute({ id: "slack-mention" })).route?.disabled).toBe(true);
    });

    it("do not replace an operator's rule that has a default's id", async () => {
      await store.seedFromYaml(
        "- { id: jira-mention, provider: PROVIDER_JIRA, trigger: { label: { label: ai } }, profile: {} }\n",
      );
      await store.seedDefaults();
      expect((await client.getRoute({ id: "jira-mention" })).route?.trigger?.kind.case).toBe("label");
    });
  });

  describe("Router over the stored rules", () => {
    const comment = (association: string) =>
      create(EventSchema, {
        provider: Provider.GITHUB,
        deliveryId: "d-1",
        eventType: "issue_comment",
        action: "created",
        text: "@hookmesh please fix the flaky test",
        actor: create(ActorSchema, { id: "21031067", login: "Codertocat", association }),
        subject: create(SubjectSchema, {
          ref: { case: "github", value: { owner: "octo", repo: "hello", number: 12n } },
          key: "github:octo/hello#12",
        }),
      });

    /** No label rule nor group gate fires in these tests, so nothing is ever asked. */
    const unasked = { standingOf: () => Promise.reject(new Error("no gate should ask")) };
    const noLabelers = { labelers: unasked, jiraGroups: unasked };

    it("turns a matching event into the rule's prompt, priority, profile and attempts", async () => {
      await store.seedDefaults();
      await client.upsertRoute({
        route: route({
          id: "octo-mention",
          eventTypes: [],
          actions: [],
          trigger: { kind: { case: "mention", value: {} } },
          profile: { runner: "claude", promptTemplate: "Fix for {{subject.key}}: {{text}}" },
          maxAttempts: 5,
        }),
      });
      const router = new Router(store, { mention: "@hookmesh", botLogins: ["hookmesh[bot]"] }, noLabelers);
      const decision = await router.route(comment("OWNER"));
      expect(decision).toMatchObject({
        matched: true,
        route: { id: "octo-mention" },
        prompt: "Fix for github:octo/hello#12: please fix the flaky test",
        priority: 300,
        profile: { runner: "claude" },
        maxAttempts: 5,
      });
    });

    it("follows changes to the rules at the next event, and says why nothing matched", async () => {
      const router = new Router(store, { mention: "@hookmesh", botLogins: [] }, noLabelers);
      expect(await router.route(comment("OWNER"))).toEqual({ matched: false, reason: "no rule matched" });
      await store.seedDefaults();
      expect(await router.route(comment("OWNER"))).toMatchObject({ matched: true, route: { id: "github-mention" } });
      expect(await router.route(comment("NONE"))).toEqual({
        matched: false,
        reason: "author association NONE may not trigger github-mention",
      });
    });
  });
});
