import { FieldError } from "@hookmesh/kit";
import { Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import {
  AgentNetwork,
  type AgentProfile,
  type Budget,
  type Route,
  type Trigger,
  type TriggerGate,
  type WorkspaceRepository,
} from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { PROMPT_PLACEHOLDERS, placeholdersIn } from "./prompt.js";

/** A rule that cannot be stored; `field` names the offending field in proto terms. */
export class InvalidRouteError extends FieldError {
  override name = "InvalidRouteError";
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_PRIORITY = 1000;
const MAX_ATTEMPTS = 100;
/** Characters of GitHub, Slack, Jira and Sentry names, plus `/` between segments and `*`. */
const GLOB = /^[A-Za-z0-9._\-/*]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RUNNERS = ["", "claude", "command"];
/** Slack's ids: workspaces `T…`, enterprises `E…`, channels `C…`/`G…`/`D…`, users `U…`/`W…`. */
const SLACK_ID = /^[A-Z0-9]{2,32}$/;
const JIRA_PROJECT_KEY = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** Cloud accountIds (`5b10…`, `557058:f581…`) and Server/Data Center keys and user names. */
const JIRA_ACCOUNT = /^[A-Za-z0-9:._@+-]{1,128}$/;
const SENTRY_SLUG = /^[A-Za-z0-9_-]{1,64}$/;
/** Jira group names may hold spaces and most punctuation; not control characters, nor only blanks. */
const JIRA_GROUP = /^(?=.*\S)[^\p{Cc}]{1,255}$/u;
/**
 * An egress host as the worker's proxy compares it: a DNS name (lowercase letters, digits and
 * hyphens per label), optionally behind one `*.` wildcard label, or an IPv4 address.
 */
const EGRESS_HOST = /^(\*\.)?(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const MAX_EGRESS_HOSTS = 100;
/** Longer lists belong in a group or a workspace-wide gate, not in every event's matching. */
const MAX_ALLOWLIST = 1000;
/** Claude Code's `--permission-mode` values; empty means the runner's default, `acceptEdits`. */
export const PERMISSION_MODES = ["", "default", "acceptEdits", "plan", "dontAsk", "bypassPermissions", "auto"];
/** GitHub owner and repository names, as the github service accepts them in a path. */
const GITHUB_NAME = /^(?!\.\.?$)[A-Za-z0-9_.-]{1,100}$/;
/** A branch, tag, full ref or commit: git's ref-name rules that matter on a command line and in a path. */
const GIT_REF = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*[./]$)[A-Za-z0-9._/-]{1,255}$/;
/** A Jira project key, a Sentry `organization/project` or project slug, a Slack channel id. */
const PLACE_KEY = /^[A-Za-z0-9_-]{1,64}(\/[A-Za-z0-9_-]{1,64})?$/;
const BUNDLE_NAME = /^(?!\.\.?$)[A-Za-z0-9_.-]{1,64}$/;
/** The gate case each provider's rules take. */
const GATE_OF: Partial<Record<Provider, NonNullable<TriggerGate["provider"]["case"]>>> = {
  [Provider.GITHUB]: "github",
  [Provider.SLACK]: "slack",
  [Provider.JIRA]: "jira",
  [Provider.SENTRY]: "sentry",
};
/** Every `author_association` GitHub sends. */
const ASSOCIATIONS = [
  "OWNER",
  "MEMBER",
  "COLLABORATOR",
  "CONTRIBUTOR",
  "FIRST_TIME_CONTRIBUTOR",
  "FIRST_TIMER",
  "MANNEQUIN",
  "NONE",
];

/**
 * Checks a rule before it is stored, so that matching never meets a rule it cannot apply.
 * `path` prefixes field names: `route` for RPCs, `routes[3]` for a seed file's fourth entry.
 */
export function validateRoute(route: Route | undefined, path = "route"): Route {
  if (!route) throw new InvalidRouteError(path, "is required");
  const invalid = (field: string, problem: string) => new InvalidRouteError(`${path}.${field}`, problem);
  if (route.id === "") throw invalid("id", "is required");
  if (!ID.test(route.id)) throw invalid("id", "must match [A-Za-z0-9_-]{1,64}");
  if (route.provider === Provider.UNSPECIFIED) throw invalid("provider", "is required");
  if (Provider[route.provider] === undefined) throw invalid("provider", "must be a known provider");
  route.eventTypes.forEach((type, i) => {
    if (type.trim() === "") throw invalid(`event_types[${i}]`, "must not be empty");
  });
  route.actions.forEach((action, i) => {
    if (action.trim() === "") throw invalid(`actions[${i}]`, "must not be empty");
  });
  validateTrigger(route.trigger, route.provider, invalid);
  validateGlob(route.subjectGlob, invalid);
  validateProfile(route.profile, invalid);
  validateWorkspace(route.profile!, route.provider, invalid);
  validateBudget(route.budget, invalid);
  if (!inRange(route.priority, 0, MAX_PRIORITY)) throw invalid("priority", `must be from 0 to ${MAX_PRIORITY}`);
  route.allowedAssociations.forEach((association, i) => {
    if (!ASSOCIATIONS.includes(association)) {
      throw invalid(`allowed_associations[${i}]`, `must be one of ${ASSOCIATIONS.join(", ")}`);
    }
  });
  validateGate(route.gate, route.provider, invalid);
  if (!inRange(route.maxAttempts, 0, MAX_ATTEMPTS)) {
    throw invalid("max_attempts", `must be from 0 to ${MAX_ATTEMPTS} (0 means the service default)`);
  }
  return route;
}

type Invalid = (field: string, problem: string) => InvalidRouteError;

function validateTrigger(trigger: Trigger | undefined, provider: Provider, invalid: Invalid): void {
  const kind = trigger?.kind;
  switch (kind?.case) {
    case "mention":
      if (/\s/.test(kind.value.mention)) throw invalid("trigger.mention.mention", "must not contain whitespace");
      return;
    case "label":
      if (kind.value.label.trim() === "") throw invalid("trigger.label.label", "is required");
      return;
    case "slashCommand":
      if (provider !== Provider.SLACK) throw invalid("trigger.slash_command", "applies only to PROVIDER_SLACK");
      if (!/^\/\S+$/.test(kind.value.command)) {
        throw invalid("trigger.slash_command.command", 'must be "/" followed by a name, e.g. "/hookmesh"');
      }
      return;
    case "issueCreated":
      if (![Provider.GITHUB, Provider.JIRA, Provider.SENTRY].includes(provider)) {
        throw invalid("trigger.issue_created", "applies only to PROVIDER_GITHUB, PROVIDER_JIRA and PROVIDER_SENTRY");
      }
      return;
    default:
      throw invalid("trigger", "is required");
  }
}

function validateGate(gate: TriggerGate | undefined, provider: Provider, invalid: Invalid): void {
  const kind = gate?.provider;
  if (kind?.case === undefined) return;
  const expected = GATE_OF[provider];
  if (kind.case !== expected) {
    throw invalid(
      `gate.${kind.case}`,
      expected
        ? `does not apply to ${Provider[provider]}: use gate.${expected}`
        : `rules of ${Provider[provider]} take no gate`,
    );
  }
  const list = (field: string, values: readonly string[], pattern: RegExp, what: string) => {
    if (values.length > MAX_ALLOWLIST) throw invalid(`gate.${kind.case}.${field}`, `may list at most ${MAX_ALLOWLIST}`);
    values.forEach((value, i) => {
      if (!pattern.test(value)) throw invalid(`gate.${kind.case}.${field}[${i}]`, `must be ${what}`);
    });
  };
  switch (kind.case) {
    case "slack":
      list("team_ids", kind.value.teamIds, SLACK_ID, 'a Slack workspace id such as "T0123ABCD"');
      list("channel_ids", kind.value.channelIds, SLACK_ID, 'a Slack channel id such as "C0123ABCD"');
      list("user_ids", kind.value.userIds, SLACK_ID, 'a Slack user id such as "U0123ABCD"');
      return;
    case "jira":
      list("project_keys", kind.value.projectKeys, JIRA_PROJECT_KEY, 'a Jira project key such as "PROJ"');
      list("account_ids", kind.value.accountIds, JIRA_ACCOUNT, "a Jira accountId (or a Server user key or name)");
      list("groups", kind.value.groups, JIRA_GROUP, "a Jira group name");
      return;
    case "sentry":
      list("organizations", kind.value.organizations, SENTRY_SLUG, "a Sentry organization slug");
      list("projects", kind.value.projects, SENTRY_SLUG, "a Sentry project slug");
      return;
    case "github":
      return;
  }
}

function validateGlob(glob: string, invalid: Invalid): void {
  if (glob === "") return;
  if (!GLOB.test(glob)) {
    throw invalid("subject_glob", "may contain only letters, digits, '.', '_', '-', '/' and the wildcards * and **");
  }
  if (glob.includes("***"))
    throw invalid("subject_glob", "has *** where * (within a segment) or ** (across) was meant");
  if (glob.split("/").includes("")) throw invalid("subject_glob", "must not have empty segments");
}

function validateProfile(profile: AgentProfile | undefined, invalid: Invalid): void {
  if (!profile) throw invalid("profile", "is required");
  if (!RUNNERS.includes(profile.runner)) {
    throw invalid("profile.runner", 'must be "claude", "command" or empty (the worker\'s default)');
  }
  const unknown = placeholdersIn(profile.promptTemplate).filter(
    (name) => !(PROMPT_PLACEHOLDERS as readonly string[]).includes(name),
  );
  if (unknown.length > 0) {
    throw invalid(
      "profile.prompt_template",
      `unknown placeholder ${unknown.map((name) => `{{${name}}}`).join(", ")}; known: ${PROMPT_PLACEHOLDERS.join(", ")}`,
    );
  }
  const runTime = profile.maxRunTime;
  if (runTime && (runTime.seconds < 0n || runTime.nanos < 0)) {
    throw invalid("profile.max_run_time", "must not be negative (0 or unset means the worker's default)");
  }
  if (!isUsd(profile.maxCostUsd)) {
    throw invalid("profile.max_cost_usd", "must be 0 (the service default) or a positive number of US dollars");
  }
  profile.allowedEnv.forEach((name, i) => {
    if (!ENV_NAME.test(name)) throw invalid(`profile.allowed_env[${i}]`, "must be an environment variable name");
  });
  validateNetwork(profile, invalid);
  if (!PERMISSION_MODES.includes(profile.permissionMode)) {
    throw invalid(
      "profile.permission_mode",
      `must be empty (acceptEdits) or one of ${PERMISSION_MODES.slice(1).join(", ")}`,
    );
  }
}

/**
 * GitHub events name their repository; other rules must name one to check out. A repository
 * here is what the worker may ask a clone token for, so names are checked as GitHub's.
 */
function validateWorkspace(profile: AgentProfile, provider: Provider, invalid: Invalid): void {
  const workspace = profile.workspace;
  if (!workspace) return;
  const named = workspace.repository !== undefined || workspace.repositories.length > 0;
  if (provider === Provider.GITHUB && named) {
    throw invalid(
      "profile.workspace.repository",
      "is not read on GitHub rules: their events name the repository (and pull request) to check out",
    );
  }
  if (workspace.enabled && provider !== Provider.GITHUB && !named) {
    throw invalid("profile.workspace", "must name a repository or repositories to check out for this provider");
  }
  if (workspace.repository) validateRepository(workspace.repository, "profile.workspace.repository", invalid);
  if (workspace.repositories.length > MAX_ALLOWLIST) {
    throw invalid("profile.workspace.repositories", `must hold at most ${MAX_ALLOWLIST} entries`);
  }
  const keys = new Set<string>();
  workspace.repositories.forEach((mapping, i) => {
    const field = `profile.workspace.repositories[${i}]`;
    if (!PLACE_KEY.test(mapping.key)) {
      throw invalid(
        `${field}.key`,
        "must be a Jira project key, a Sentry organization/project or slug, or a Slack channel id",
      );
    }
    if (keys.has(mapping.key)) throw invalid(`${field}.key`, `repeats "${mapping.key}"`);
    keys.add(mapping.key);
    if (!mapping.repository) throw invalid(`${field}.repository`, "is required");
    validateRepository(mapping.repository, `${field}.repository`, invalid);
  });
  if (workspace.configBundle !== "" && !BUNDLE_NAME.test(workspace.configBundle)) {
    throw invalid("profile.workspace.config_bundle", "must be a directory name: letters, digits, -, _ and .");
  }
}

function validateRepository(repository: WorkspaceRepository, field: string, invalid: Invalid): void {
  if (!GITHUB_NAME.test(repository.owner)) throw invalid(`${field}.owner`, "must be a GitHub owner login");
  if (!GITHUB_NAME.test(repository.repo)) throw invalid(`${field}.repo`, "must be a GitHub repository name");
  if (repository.ref !== "" && !GIT_REF.test(repository.ref)) {
    throw invalid(`${field}.ref`, "must be a branch, tag, full ref or commit SHA (letters, digits, ., _, -, /)");
  }
}

/** A rule's network is refused here rather than as a failed run on every worker. */
function validateNetwork(profile: AgentProfile, invalid: Invalid): void {
  if (!(profile.network in AgentNetwork)) {
    throw invalid("profile.network", "must be AGENT_NETWORK_NONE, AGENT_NETWORK_EGRESS or AGENT_NETWORK_HOST");
  }
  const hosts = profile.egressHosts;
  if (profile.network !== AgentNetwork.EGRESS) {
    if (hosts.length > 0) throw invalid("profile.egress_hosts", "is only read with network AGENT_NETWORK_EGRESS");
    return;
  }
  if (hosts.length === 0) {
    throw invalid("profile.egress_hosts", "must name at least one host for network AGENT_NETWORK_EGRESS");
  }
  if (hosts.length > MAX_EGRESS_HOSTS)
    throw invalid("profile.egress_hosts", `must hold at most ${MAX_EGRESS_HOSTS} hosts`);
  hosts.forEach((host, i) => {
    if (!EGRESS_HOST.test(host)) {
      throw invalid(
        `profile.egress_hosts[${i}]`,
        "must be a lowercase host name, `*.` and a host name, or an IPv4 address",
      );
    }
  });
}

function validateBudget(budget: Budget | undefined, invalid: Invalid): void {
  if (!budget) return;
  if (!isUsd(budget.maxCostUsdPerDay)) {
    throw invalid("budget.max_cost_usd_per_day", "must be 0 (the service default) or a positive number of US dollars");
  }
  if (budget.unlimitedPerDay && budget.maxCostUsdPerDay > 0) {
    throw invalid("budget.max_cost_usd_per_day", "must be 0 when unlimited_per_day is set");
  }
}

function isUsd(value: number): boolean {
  return value >= 0 && Number.isFinite(value);
}

function inRange(value: number, min: number, max: number): boolean {
  return value >= min && value <= max;
}
