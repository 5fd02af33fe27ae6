import { type Actor, type Event, Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { Route, Trigger } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";

export interface MatchOptions {
  /** The configured mention handle, used by mention triggers that name none. */
  mention: string;
  /** hookmesh's own accounts, whose events never trigger (loop guard). */
  botLogins: readonly string[];
}

export type MatchResult = { matched: true; route: Route } | { matched: false; reason: string };

/** GitHub `author_association` values of people with write access. */
const WRITE_ASSOCIATIONS: readonly string[] = ["OWNER", "MEMBER", "COLLABORATOR"];

/** Highest priority first, then by id, so that equal priorities resolve the same way everywhere. */
export function compareRoutes(a: Route, b: Route): number {
  return b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The rule that `event` triggers, or why none does. */
export function matchRoute(routes: readonly Route[], event: Event, options: MatchOptions): MatchResult {
  const actor = event.actor;
  if (actor && isOwnBot(actor, options.botLogins)) {
    return { matched: false, reason: `event from hookmesh's own bot account ${actor.login} (loop guard)` };
  }
  const association = actor?.association.toUpperCase() ?? "";
  // A rule refused for the author's association does not end the search: a lower rule may
  // allow more people. If none matches, that refusal is the more useful reason to show.
  let refusal: string | undefined;
  for (const route of [...routes].sort(compareRoutes)) {
    if (route.disabled || !matchesEvent(route, event, options.mention)) continue;
    // Only people with triage access or more can add a label on GitHub, so a label is its own
    // permission check (and the payload's association would be the issue author's, not theirs).
    const labelTrigger = route.trigger?.kind.case === "label";
    if (event.provider === Provider.GITHUB && !labelTrigger && !allowedAssociations(route).includes(association)) {
      refusal ??= `author association ${association || "(none)"} may not trigger ${route.id}`;
      continue;
    }
    return { matched: true, route };
  }
  return { matched: false, reason: refusal ?? "no rule matched" };
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
function placeOf(event: Event): string {
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
