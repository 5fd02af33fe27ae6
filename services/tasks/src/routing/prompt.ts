import { type Event, Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { Route } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { findMention, isSlackAppMention } from "./match.js";

/** The names a prompt template may use as `{{name}}`, as documented on AgentProfile. */
export const PROMPT_PLACEHOLDERS = [
  "text",
  "event_type",
  "action",
  "actor",
  "subject.key",
  "subject.title",
  "subject.url",
  "provider",
  "label",
] as const;

type Placeholder = (typeof PROMPT_PLACEHOLDERS)[number];

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Every placeholder name used in `template`, known or not. */
export function placeholdersIn(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

/**
 * The agent's prompt for `event` under `route`: the profile's template filled in, or, without
 * one, the request text followed by the subject's context.
 */
export function renderPrompt(route: Route, event: Event, mention: string): string {
  const values = placeholderValues(route, event, mention);
  const template = route.profile?.promptTemplate ?? "";
  if (template !== "") {
    // Validation rejects unknown names, so every placeholder has a value.
    return template.replace(PLACEHOLDER, (_, name: string) => values[name as Placeholder]);
  }
  const context = [
    ["Provider", values.provider],
    ["Event", [event.eventType, event.action].filter(Boolean).join(" ")],
    ["Subject", values["subject.key"]],
    ["Title", values["subject.title"]],
    ["URL", values["subject.url"]],
    ["Asked by", values.actor],
  ]
    .filter(([, value]) => value !== "")
    .map(([name, value]) => `${name}: ${value}`);
  return [values.text, ["Context:", ...context].join("\n")].filter(Boolean).join("\n\n");
}

function placeholderValues(route: Route, event: Event, mention: string): Record<Placeholder, string> {
  const trigger = route.trigger?.kind;
  return {
    text:
      trigger?.case === "mention" ? requestAfterMention(event, trigger.value.mention || mention) : event.text.trim(),
    event_type: event.eventType,
    action: event.action,
    actor: event.actor?.login || event.actor?.id || "",
    "subject.key": event.subject?.key ?? "",
    "subject.title": event.subject?.title ?? "",
    "subject.url": event.subject?.url ?? "",
    provider: Provider[event.provider]?.toLowerCase() ?? "",
    label: event.label,
  };
}

/** Slack's own form of a user mention, `<@U123>` or `<@U123|name>`. */
const SLACK_USER_MENTION = /<@[A-Z0-9]+(?:\|[^>]*)?>/;

/**
 * What the person asked for: the text after the first mention. A mention at the end
 * ("can you fix this, @hookmesh") asks for what came before it.
 */
function requestAfterMention(event: Event, handle: string): string {
  const text = event.text;
  let found = findMention(text, handle);
  if (!found && isSlackAppMention(event)) {
    const slack = SLACK_USER_MENTION.exec(text);
    found = slack ? { index: slack.index, length: slack[0].length } : undefined;
  }
  if (!found) return text.trim();
  const after = text
    .slice(found.index + found.length)
    .replace(/^[\s:,]+/, "")
    .trim();
  return (
    after ||
    text
      .slice(0, found.index)
      .replace(/[\s:,]+$/, "")
      .trim()
  );
}
