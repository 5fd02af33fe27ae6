import { type Actor, type Event, Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { JiraGate, Route, SentryGate, SlackGate, Trigger } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";

export interface MatchOptions {
  /** The configured mention handle, used by mention triggers that name none. */
  mention: string;
  /** hookmesh's own accounts, whose events never trigger (loop guard). */
  botLogins: readonly string[];
}

/**
 * Who added the label of a GitHub label event, as an `author_association` derived from their
 * permission on the repository (the payload's association is the issue author's), or why that
 * is not known.
 */
export type LabelerStanding = { association: string } | { unknown: string };

/** The Jira groups of the account that caused a Jira event, or why they are not known. */
export type GroupsStanding = { groups: readonly string[] } | { unknown: string };

/** What matching needs from other services, asked only when a rule needs it (see `needsLabeler`, `needsJiraGroups`). */
export interface MatchFacts {
  /** Who added the label of a GitHub label event; without it a GitHub label rule refuses. */
  labeler?: LabelerStanding;
  /** The groups of a Jira event's account; without them a Jira group allowlist refuses. */
  jiraGroups?: GroupsStanding;
}

export type MatchResult = { matched: true; route: Route } | { matched: false; reason: string };

/** GitHub `author_association` values of people with write access. */
const WRITE_ASSOCIATIONS: readonly string[] = ["OWNER", "MEMBER", "COLLABORATOR"];

/** Highest priority first, then by id, so that equal priorities resolve the same way everywhere. */
export function compareRoutes(a: Route, b: Route): number {
  return b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The rule that `event` triggers, or why none does. */
export function matchRoute(
  routes: readonly Route[],
  event: Event,
  options: MatchOptions,
  facts: MatchFacts = {},
): MatchResult {
  const actor = event.actor;
  if (actor && isOwnBot(actor, options.botLogins)) {
    return { matched: false, reason: `event from hookmesh's own bot account ${actor.login} (loop guard)` };
  }
  // Whatever a rule says: another bot's message mentioning the handle is not a person's request,
  // and two bots answering each other would loop.
  if (event.provider === Provider.SLACK && actor?.bot) {
    return { matched: false, reason: `Slack bot ${actor.login || actor.id || "(unnamed)"} never triggers` };
  }
  // A rule refused by its gate does not end the search: a lower rule may allow more people.
  // If none matches, that refusal is the more useful reason to show.
  let refusal: string | undefined;
  for (const route of [...routes].sort(compareRoutes)) {
    if (route.disabled || !matchesEvent(route, event, options.mention)) continue;
    const refused = gateRefusal(route, event, facts);
    if (refused !== undefined) {
      refusal ??= refused;
      continue;
    }
    return { matched: true, route };
  }
  return { matched: false, reason: refusal ?? "no rule matched" };
}

/**
 * True when a GitHub label rule fires for `event`, so that matching needs to know who added the
 * label: the only case worth a call to the github service.
 */
export function needsLabeler(routes: readonly Route[], event: Event, mention: string): boolean {
  return (
    event.provider === Provider.GITHUB &&
    routes.some(
      (route) => !route.disabled && route.trigger?.kind.case === "label" && matchesEvent(route, event, mention),
    )
  );
}

/** True when a Jira rule gated by group fires for `event`: the only case worth a call to the jira service. */
export function needsJiraGroups(routes: readonly Route[], event: Event, mention: string): boolean {
  return (
    event.provider === Provider.JIRA &&
    routes.some(
      (route) =>
        !route.disabled &&
        route.gate?.provider.case === "jira" &&
        route.gate.provider.value.groups.length > 0 &&
        matchesEvent(route, event, mention),
    )
  );
}

/** Why `route`'s gate refuses `event`, or undefined when it lets it through. */
function gateRefusal(route: Route, event: Event, facts: MatchFacts): string | undefined {
  const gate = route.gate?.provider;
  switch (event.provider) {
    case Provider.GITHUB:
      return gitHubRefusal(route, event, gate?.case === "github" && gate.value.allowBots, facts.labeler);
    case Provider.SLACK:
      return slackRefusal(route.id, event, gate?.case === "slack" ? gate.value : undefined);
    case Provider.JIRA:
      return jiraRefusal(route.id, event, gate?.case === "jira" ? gate.value : undefined, facts.jiraGroups);
    case Provider.SENTRY:
      return sentryRefusal(route.id, event, gate?.case === "sentry" ? gate.value : undefined);
    default:
      // A custom webhook's sender is whoever holds its secret, which the operator chose.
      return undefined;
  }
}

function gitHubRefusal(
  route: Route,
  event: Event,
  allowBots: boolean,
  labeler: LabelerStanding | undefined,
): string | undefined {
  const actor = event.actor;
  if (actor?.bot && !allowBots) {
    return `bot ${actor.login} may not trigger ${route.id} (gate.github.allow_bots is off)`;
  }
  if (route.trigger?.kind.case === "label") {
    if (labeler === undefined || "unknown" in labeler) {
      return `labeler ${actor?.login || "(unknown)"} may not trigger ${route.id}: ${labeler?.unknown ?? "their permission was not checked"}`;
    }
    return allowedAssociations(route).includes(labeler.association)
      ? undefined
      : `labeler ${actor?.login || "(unknown)"} (permission as ${labeler.association}) may not trigger ${route.id}`;
  }
  const association = actor?.association.toUpperCase() ?? "";
  return allowedAssociations(route).includes(association)
    ? undefined
    : `author association ${association || "(none)"} may not trigger ${route.id}`;
}

function slackRefusal(routeId: string, event: Event, gate: SlackGate | undefined): string | undefined {
  if (!gate || (gate.teamIds.length === 0 && gate.channelIds.length === 0 && gate.userIds.length === 0)) {
    return `${routeId} is closed: its gate.slack names no team_ids, channel_ids or user_ids`;
  }
  const slack = event.subject?.ref.case === "slack" ? event.subject.ref.value : undefined;
  // Both where it happened and who wrote it: in a channel shared with another organization, a
  // guest from that organization writes in this workspace.
  return (
    unlisted(routeId, "gate.slack.team_ids", gate.teamIds, slack?.teamId ?? "", "workspace") ??
    unlisted(
      routeId,
      "gate.slack.team_ids",
      gate.teamIds,
      event.actor?.teamId || (slack?.teamId ?? ""),
      "user's workspace",
    ) ??
    unlisted(routeId, "gate.slack.channel_ids", gate.channelIds, slack?.channelId ?? "", "channel") ??
    unlisted(routeId, "gate.slack.user_ids", gate.userIds, event.actor?.id ?? "", "user")
  );
}

function jiraRefusal(
  routeId: string,
  event: Event,
  gate: JiraGate | undefined,
  groups: GroupsStanding | undefined,
): string | undefined {
  if (!gate || (gate.projectKeys.length === 0 && gate.accountIds.length === 0 && gate.groups.length === 0)) {
    return `${routeId} is closed: its gate.jira names no project_keys, account_ids or groups`;
  }
  const actor = event.actor;
  if (actor?.bot && !gate.allowApps) {
    return `app account ${actor.login || actor.id} may not trigger ${routeId} (gate.jira.allow_apps is off)`;
  }
  return (
    unlisted(routeId, "gate.jira.project_keys", gate.projectKeys, placeOf(event), "project", true) ??
    jiraPersonRefusal(routeId, actor?.id ?? "", gate, groups)
  );
}

/** `account_ids` and `groups` together name the people: an account passes when either lists it. */
function jiraPersonRefusal(
  routeId: string,
  accountId: string,
  gate: JiraGate,
  groups: GroupsStanding | undefined,
): string | undefined {
  if (gate.groups.length === 0)
    return unlisted(routeId, "gate.jira.account_ids", gate.accountIds, accountId, "account");
  if (accountId !== "" && gate.accountIds.includes(accountId)) return undefined;
  const account = `account ${accountId || "(none)"}`;
  if (groups === undefined || "unknown" in groups) {
    return `${account} is not in gate.jira.account_ids of ${routeId}, and its groups are unknown: ${groups?.unknown ?? "they were not checked"}`;
  }
  const wanted = new Set(gate.groups.map((group) => group.toLowerCase()));
  if (groups.groups.some((group) => wanted.has(group.toLowerCase()))) return undefined;
  return `${account} is in none of gate.jira.groups of ${routeId}${gate.accountIds.length > 0 ? " nor in its account_ids" : ""}`;
}

/** Sentry's own actor, in whose name issues are created from events. */
const SENTRY_ITSELF = "sentry";

function sentryRefusal(routeId: string, event: Event, gate: SentryGate | undefined): string | undefined {
  if (!gate || (gate.organizations.length === 0 && gate.projects.length === 0)) {
    return `${routeId} is closed: its gate.sentry names no organizations or projects`;
  }
  const actor = event.actor;
  if (actor?.bot && actor.id !== SENTRY_ITSELF && !gate.allowApps) {
    return `integration ${actor.login || actor.id} may not trigger ${routeId} (gate.sentry.allow_apps is off)`;
  }
  const sentry = event.subject?.ref.case === "sentry" ? event.subject.ref.value : undefined;
  if (gate.organizations.length > 0 && !sentry?.organizationSlug) {
    // A comment delivery does not say which organization it is from (see SentryGate).
    return `${routeId} allows only listed organizations (gate.sentry.organizations), and this ${event.eventType || "event"} names none`;
  }
  return (
    unlisted(
      routeId,
      "gate.sentry.organizations",
      gate.organizations,
      sentry?.organizationSlug ?? "",
      "organization",
      true,
    ) ?? unlisted(routeId, "gate.sentry.projects", gate.projects, sentry?.projectSlug ?? "", "project", true)
  );
}

/** The refusal when `allowed` is set and does not list `value`; an empty list allows anything. */
function unlisted(
  routeId: string,
  field: string,
  allowed: readonly string[],
  value: string,
  what: string,
  ignoreCase = false,
): string | undefined {
  if (allowed.length === 0) return undefined;
  const same = ignoreCase ? (a: string) => a.toLowerCase() === value.toLowerCase() : (a: string) => a === value;
  if (value !== "" && allowed.some(same)) return undefined;
  return `${what} ${value || "(none)"} is not in ${field} of ${routeId}`;
}

function matchesEvent(route: Route, event: Event, mention: string): boolean {
  return (
    route.provider === event.provider &&
    (route.eventTypes.length === 0 || route.eventTypes.includes(event.eventType)) &&
    (route.actions.length === 0 || route.actions.includes(event.action)) &&
    (route.subjectGlob === "" || globMatches(route.subjectGlob, placeOf(event))) &&
    triggerFires(route.trigger, event, mention)
  );
}

function triggerFires(trigger: Trigger | undefined, event: Event, mention: string): boolean {
  const kind = trigger?.kind;
  switch (kind?.case) {
    case "mention":
      // An app_mention is one of hookmesh's own handle; a rule's other handle must be in the text.
      if (kind.value.mention === "" && isSlackAppMention(event)) return true;
      return findMention(event.text, kind.value.mention || mention) !== undefined;
    case "label":
      return event.label !== "" && event.label.toLowerCase() === kind.value.label.toLowerCase();
    case "slashCommand":
      return (
        event.provider === Provider.SLACK &&
        event.eventType === "slash_command" &&
        event.action.toLowerCase() === kind.value.command.toLowerCase()
      );
    case "issueCreated":
      return (
        (event.eventType === "issue" && event.action === "created") ||
        (event.eventType === "issues" && event.action === "opened") ||
        event.eventType === "jira:issue_created"
      );
    default:
      return false;
  }
}

/**
 * Slack sends `app_mention` only when the app was mentioned, and writes the mention as
 * `<@U…>` (the app's user id), not as the handle: the event itself is the mention.
 */
export function isSlackAppMention(event: Event): boolean {
  return event.provider === Provider.SLACK && event.eventType === "app_mention";
}

/**
 * Where `handle` is mentioned in `text` as a word of its own: not inside an e-mail address or
 * a longer handle (`@hookmesh-bot`, `@hookmesh.io`), case-insensitively.
 */
export function findMention(text: string, handle: string): { index: number; length: number } | undefined {
  if (handle === "") return undefined;
  const pattern = new RegExp(
    `(?<![\\p{L}\\p{N}_.@-])${escapeRegExp(handle)}(?![\\p{L}\\p{N}_-]|\\.[\\p{L}\\p{N}])`,
    "iu",
  );
  const found = pattern.exec(text);
  return found ? { index: found.index, length: found[0].length } : undefined;
}

/** The subject's place that `subject_glob` is matched against; empty when it has none. */
export function placeOf(event: Event): string {
  const ref = event.subject?.ref;
  switch (ref?.case) {
    case "github":
      return ref.value.owner && ref.value.repo ? `${ref.value.owner}/${ref.value.repo}` : "";
    case "slack":
      return ref.value.channelId;
    case "jira": {
      // The project key is the issue key without its number: PROJ-7 → PROJ.
      const dash = ref.value.issueKey.lastIndexOf("-");
      return dash > 0 ? ref.value.issueKey.slice(0, dash) : ref.value.issueKey;
    }
    case "sentry":
      return ref.value.organizationSlug && ref.value.projectSlug
        ? `${ref.value.organizationSlug}/${ref.value.projectSlug}`
        : "";
    default:
      return "";
  }
}

/**
 * `*` matches within a segment, `**` across segments. Case-insensitive, because GitHub owner
 * and repository names are.
 */
export function globMatches(glob: string, place: string): boolean {
  if (place === "") return false;
  const pattern = glob
    .split("**")
    .map((part) => part.split("*").map(escapeRegExp).join("[^/]*"))
    .join(".*");
  return new RegExp(`^${pattern}$`, "i").test(place);
}

function escapeRegExp(literal: string): string {
  return literal.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function allowedAssociations(route: Route): readonly string[] {
  return route.allowedAssociations.length > 0 ? route.allowedAssociations : WRITE_ASSOCIATIONS;
}

/**
 * True for hookmesh's own accounts. A bot account also matches by its bare name, because
 * providers differ in whether they add GitHub's `[bot]` suffix to an app's login.
 */
function isOwnBot(actor: Actor, botLogins: readonly string[]): boolean {
  if (actor.login === "") return false;
  const login = actor.login.toLowerCase();
  const bare = (name: string) => name.toLowerCase().replace(/\[bot\]$/, "");
  return botLogins.some((bot) => bot.toLowerCase() === login || (actor.bot && bare(bot) === bare(login)));
}
