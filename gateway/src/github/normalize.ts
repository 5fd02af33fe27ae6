import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ActorSchema,
  type Event,
  EventSchema,
  GitHubSubjectSchema,
  Provider,
  SubjectSchema,
  type TraceContext,
} from "../../../gen/hookmesh/events/v1/event_pb.js";

export type JsonObject = Record<string, unknown>;

export interface GitHubDelivery {
  eventType: string;
  deliveryId: string;
  hookId: string;
  /** The parsed body. Verified as GitHub's, but its shape varies by event, so nothing is assumed. */
  payload: JsonObject;
  rawBody: Buffer;
  contentType: string;
  receiveTime: Timestamp;
  traceContext?: TraceContext;
}

/** The provider-neutral Event for a verified GitHub delivery. */
export function normalizeGitHub(delivery: GitHubDelivery): Event {
  const { payload } = delivery;
  const repository = obj(payload.repository);
  const issue = obj(payload.issue);
  const pullRequest = obj(payload.pull_request);
  const item = payload.issue !== undefined ? issue : pullRequest;
  // A comment or review, when the event is about one; its text is then the event's text.
  const hasComment = payload.comment !== undefined || payload.review !== undefined;
  const comment = payload.comment !== undefined ? obj(payload.comment) : obj(payload.review);
  const sender = obj(payload.sender);
  const owner = str(obj(repository.owner).login);
  const repo = str(repository.name);
  const number = int(item.number);
  const where = owner && repo ? `${owner}/${repo}` : "";
  return create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId: delivery.deliveryId,
    sourceId: delivery.hookId,
    eventType: delivery.eventType,
    action: str(payload.action),
    actor: create(ActorSchema, {
      id: int(sender.id) > 0 ? String(int(sender.id)) : "",
      login: str(sender.login),
      bot: sender.type === "Bot",
      association: str(comment.author_association) || str(item.author_association),
    }),
    subject: create(SubjectSchema, {
      ref: {
        case: "github",
        value: create(GitHubSubjectSchema, {
          owner,
          repo,
          number: BigInt(number),
          pullRequest: payload.pull_request !== undefined || issue.pull_request !== undefined,
          // A review is not a comment: its id would address the wrong API.
          commentId: BigInt(int(obj(payload.comment).id)),
          installationId: BigInt(int(obj(payload.installation).id)),
        }),
      },
      key: where && `github:${where}${number ? `#${number}` : ""}`,
      url: str(comment.html_url) || str(item.html_url) || str(repository.html_url),
      title: str(item.title),
    }),
    // A comment or review without a body (an approval) carries no text: never the PR's.
    text: hasComment ? str(comment.body) : str(item.body),
    label: str(obj(payload.label).name),
    rawBody: delivery.rawBody,
    contentType: delivery.contentType,
    receiveTime: delivery.receiveTime,
    traceContext: delivery.traceContext,
  });
}

function obj(value: unknown): JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as JsonObject) : {};
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function int(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}
