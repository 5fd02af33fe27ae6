import { create } from "@bufbuild/protobuf";
import { type Event, EventSchema, Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";

/** An owner's comment that mentions hookmesh, which the default rules queue, on a subject of its own. */
export function queuedEvent(deliveryId: string): Event {
  return create(EventSchema, {
    provider: Provider.GITHUB,
    deliveryId,
    eventType: "issue_comment",
    action: "created",
    text: "@hookmesh fix it",
    actor: { login: "octocat", association: "OWNER" },
    subject: { key: `test:${deliveryId}` },
    rawBody: new TextEncoder().encode("{}"),
  });
}
