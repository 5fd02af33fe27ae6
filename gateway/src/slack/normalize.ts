import { create } from "@bufbuild/protobuf";
import {
  ActorSchema,
  SlackSubjectSchema,
  type Subject,
  SubjectSchema,
} from "../../../gen/hookmesh/events/v1/event_pb.js";
import { type JsonObject, obj, type ProviderVerdict, str } from "../webhook-provider.js";

export type SlackEventFields = Extract<ProviderVerdict, { kind: "event" }>["event"];

/**
 * An Events API `event_callback`: the delivery id is Slack's `event_id`, which Slack keeps when
 * it retries (`X-Slack-Retry-Num`), and the event type is the inner event's (`app_mention`,
 * `message`, …), with a message's subtype as the action.
 */
export function normalizeSlackEvent(envelope: JsonObject, eventId: string, eventType: string): SlackEventFields {
  const event = obj(envelope.event);
  const messageTs = str(event.ts);
  return {
    deliveryId: eventId,
    sourceId: str(envelope.api_app_id),
    eventType,
    action: str(event.subtype),
    actor: create(ActorSchema, {
      id: str(event.user),
      // The author's own workspace: a Slack Connect guest's is not the channel's.
      teamId: str(event.user_team) || str(event.team) || str(envelope.team_id),
      // Events name people by id only; a bot's message also carries the bot's name.
      login: str(event.username) || str(obj(event.bot_profile).name),
      // Every shape Slack gives a bot's message: a classic `bot_message`, an app's bot user (its
      // `bot_id`), and a bot's `bot_profile` where an integration left the id out. A person's
      // message has none of them; a bot that posts with a person's token cannot be told apart.
      bot:
        str(event.bot_id) !== "" || event.subtype === "bot_message" || Object.keys(obj(event.bot_profile)).length > 0,
    }),
    // A reply belongs to its thread; a top-level message starts one rooted at itself.
    subject: slackSubject(
      str(envelope.team_id) || str(event.team),
      str(event.channel),
      str(event.thread_ts) || messageTs,
      messageTs,
    ),
    // An edit (`message_changed`) carries its text in `event.message`, not here: edits are not
    // new requests, so they carry no text that could trigger a second run.
    text: str(event.text),
  };
}

/**
 * A slash command (form fields). Slack gives it no id and does not retry it; the hash of the
 * signed body, which includes the unique `trigger_id`, identifies it, so that only a replay of
 * the very same request counts as a duplicate.
 */
export function normalizeSlashCommand(form: URLSearchParams, deliveryId: string): SlackEventFields {
  return {
    deliveryId,
    sourceId: form.get("api_app_id") ?? "",
    eventType: "slash_command",
    action: form.get("command") ?? "",
    actor: create(ActorSchema, {
      id: form.get("user_id") ?? "",
      login: form.get("user_name") ?? "",
      teamId: form.get("user_team") ?? form.get("team_id") ?? "",
    }),
    // Not in a thread: the command's answer starts one in the channel.
    subject: slackSubject(form.get("team_id") ?? "", form.get("channel_id") ?? "", "", ""),
    text: form.get("text") ?? "",
  };
}

/**
 * An interactivity payload (`block_actions`, `view_submission`, `shortcut`, `message_action`…),
 * identified by the hash of the signed body like a slash command. The action is what the app
 * named the control: the clicked element's `action_id`, or the shortcut's or view's `callback_id`.
 */
export function normalizeSlackInteraction(
  payload: JsonObject,
  eventType: string,
  deliveryId: string,
): SlackEventFields {
  const user = obj(payload.user);
  const container = obj(payload.container);
  const message = obj(payload.message);
  const firstAction = Array.isArray(payload.actions) ? obj(payload.actions[0]) : {};
  const messageTs = str(message.ts) || str(container.message_ts);
  return {
    deliveryId,
    sourceId: str(payload.api_app_id),
    eventType,
    action: str(firstAction.action_id) || str(payload.callback_id) || str(obj(payload.view).callback_id),
    actor: create(ActorSchema, {
      id: str(user.id),
      login: str(user.username) || str(user.name),
      teamId: str(user.team_id) || str(obj(payload.team).id),
    }),
    subject: slackSubject(
      str(obj(payload.team).id) || str(user.team_id),
      str(obj(payload.channel).id) || str(container.channel_id),
      str(message.thread_ts) || str(container.thread_ts) || messageTs,
      messageTs,
    ),
    // A message shortcut is a request about that message, so its text is what was asked;
    // a click or a form submission has no text of its own.
    text: eventType === "message_action" ? str(message.text) : "",
  };
}

/** `slack:{team}/{channel}/{thread_ts}`, without the thread for channel-level requests. */
function slackSubject(teamId: string, channelId: string, threadTs: string, messageTs: string): Subject {
  return create(SubjectSchema, {
    ref: { case: "slack", value: create(SlackSubjectSchema, { teamId, channelId, threadTs, messageTs }) },
    key: channelId && `slack:${teamId}/${channelId}${threadTs ? `/${threadTs}` : ""}`,
  });
}
