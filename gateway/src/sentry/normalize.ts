import { create } from "@bufbuild/protobuf";
import { ActorSchema, SentrySubjectSchema, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { int, type JsonObject, obj, type ProviderVerdict, str } from "../webhook-provider.js";

export type SentryEventFields = Extract<ProviderVerdict, { kind: "event" }>["event"];

/**
 * A Sentry integration-platform webhook: the resource (`Sentry-Hook-Resource`) is the event
 * type and the body's `action` the action. What the event is about depends on the resource:
 * `issue` sends the issue, `comment` the comment and its issue's id, `event_alert` and `error`
 * a serialized event that names its issue.
 */
export function normalizeSentry(payload: JsonObject, deliveryId: string, resource: string): SentryEventFields {
  const data = obj(payload.data);
  const actor = obj(payload.actor);
  const about = aboutOf(resource, data);
  const organizationSlug = about.organizationSlug || organizationFromUrl(about.url);
  return {
    deliveryId,
    // The installation is the hook that sent the delivery.
    sourceId: str(obj(payload.installation).uuid),
    eventType: resource,
    action: str(payload.action),
    actor: create(ActorSchema, {
      id: idOf(actor.id),
      login: str(actor.name),
      // Sentry acts as `{"type": "application", "id": "sentry"}`; an integration as its app.
      bot: str(actor.type) !== "" && actor.type !== "user",
    }),
    subject: create(SubjectSchema, {
      ref: {
        case: "sentry",
        value: create(SentrySubjectSchema, {
          organizationSlug,
          projectSlug: about.projectSlug,
          issueId: about.issueId,
        }),
      },
      key: about.issueId && `sentry:${about.issueId}`,
      url: about.url,
      title: about.title,
    }),
    text: resource === "comment" ? str(data.comment) : "",
  };
}

interface About {
  issueId: string;
  projectSlug: string;
  organizationSlug: string;
  url: string;
  title: string;
}

function aboutOf(resource: string, data: JsonObject): About {
  switch (resource) {
    case "issue": {
      const issue = obj(data.issue);
      const project = obj(issue.project);
      return {
        issueId: idOf(issue.id),
        projectSlug: str(project.slug),
        organizationSlug: str(obj(project.organization).slug),
        // `url` is the API's address; these two are for people.
        url: str(issue.web_url) || str(issue.permalink),
        title: str(issue.title),
      };
    }
    case "comment":
      // A comment names its issue and project only; the organization is not in the body.
      return {
        issueId: idOf(data.issue_id),
        projectSlug: str(data.project_slug),
        organizationSlug: "",
        url: "",
        title: "",
      };
    case "event_alert":
    case "error": {
      // A serialized event names its project by numeric id only, so there is no slug to give.
      const event = obj(resource === "error" ? data.error : data.event);
      return {
        issueId: idOf(event.issue_id),
        projectSlug: "",
        organizationSlug: "",
        url: str(event.web_url),
        title: str(event.title),
      };
    }
    default:
      return { issueId: "", projectSlug: "", organizationSlug: "", url: "", title: "" };
  }
}

/** Sentry sends ids as strings in some resources and as numbers in others. */
function idOf(value: unknown): string {
  return str(value) || (int(value) > 0 ? String(int(value)) : "");
}

/** Subdomains of sentry.io that are regions or services, not organizations. */
const NON_ORGANIZATION_HOSTS = new Set(["www", "us", "de", "api"]);

/**
 * The organization a Sentry URL belongs to: `/organizations/{slug}/…` in the path, or the
 * `{slug}.sentry.io` host of Sentry's organization domains.
 */
function organizationFromUrl(link: string): string {
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    return "";
  }
  const inPath = /\/organizations\/([^/]+)\//.exec(url.pathname);
  if (inPath) return decodeSegment(inPath[1]!);
  const labels = url.hostname.split(".");
  if (labels.length === 3 && url.hostname.endsWith(".sentry.io") && !NON_ORGANIZATION_HOSTS.has(labels[0]!))
    return labels[0]!;
  return "";
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return "";
  }
}
