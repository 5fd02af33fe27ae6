import { type RedisClient, runScript } from "@hookmesh/kit";
import { storeCall } from "./store-call.js";

/** Marks a delivery claimed by a request that has not yet made it durable. */
const PENDING = "pending";

export type Claim =
  | { fresh: true; key: string }
  /** `replayOf`: the delivery id of the first delivery with the same signed content, when that is why. */
  | { fresh: false; taskId: string; replayOf?: string };

/** What a request's signature covers, as the replay check identifies it. */
export interface SignedContent {
  /** The route it arrived on (`github`, `custom/acme`): replays are looked for within it. */
  route: string;
  /** The SHA-256 of the body (hex). */
  bodySha256: string;
  /** The signed timestamp, when the signature covers one (Slack, custom `{timestamp}.{body}`). */
  timestamp?: string;
}

/**
 * Claims the delivery id unless it is claimed; else answers with its task. Unless the id is
 * new but the signed content was claimed by another delivery whose claim still lives: then
 * answers with that one's task and delivery id. The content's record names the first
 * delivery's claim (and its delivery id after a newline), so a claim that is gone frees its
 * content too. The claim's key is read from that
 * record in the script, which a single Redis (the gateway's store) allows. The claim holds
 * `value`: the task the delivery becomes when it is known, else "pending".
 *
 * A Lua function, so that the intake script (intake.ts) claims in the same step as it appends.
 */
export const CLAIM_LUA = `
local function claim(key, contentKey, windowMs, deliveryId, value)
  local taskId = redis.call('GET', key)
  if taskId then return {'delivery', taskId} end
  local first = redis.call('GET', contentKey)
  if first then
    local separator = string.find(first, '\\n', 1, true)
    local firstTask = redis.call('GET', string.sub(first, 1, separator - 1))
    if firstTask then return {'replay', firstTask, string.sub(first, separator + 1)} end
  end
  redis.call('SET', key, value, 'PX', windowMs)
  redis.call('SET', contentKey, key .. '\\n' .. deliveryId, 'PX', windowMs)
  return {'fresh'}
end
`;

const CLAIM_SCRIPT = `${CLAIM_LUA}
return claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], '${PENDING}')
`;

/** What a claim's script answers: `fresh`, or `delivery`/`replay` with the task and the first delivery id. */
export type ClaimReply = [outcome: string, taskId?: string, replayOf?: string];

/**
 * The gateway's duplicate check: the first request for a delivery claims it; later ones
 * (provider retries, Slack's X-Slack-Retry-Num, Jira's retries for ~30 minutes) are answered
 * as duplicates while the claim lives. The acknowledgment claims in the same script as it makes
 * the delivery durable (intake.ts), so there is never a claim without its delivery: the
 * provider's retry of a delivery answered 503 is processed rather than dropped.
 *
 * It is also the replay guard. GitHub (`X-GitHub-Delivery`, `X-GitHub-Hook-Id`), Jira
 * (`X-Atlassian-Webhook-Identifier`) and Sentry (`Request-ID`) do not sign their delivery ids,
 * so a captured body sent again under a new id would pass the first check. The second is on
 * what the signature covers, scoped to the route: the same signed content within the window
 * is the same delivery, whatever id it comes with. Can an identical signed content be a new
 * legitimate event? Per provider:
 * - GitHub: a payload describes one event with the objects' `updated_at` and ids; retries and
 *   redeliveries resend the same event. A repository's and an organization's hook delivering
 *   one event to one gateway route send the same body too, and now make one task, not two.
 * - Slack: every payload carries its own `event_id` or `trigger_id`, and the signed timestamp
 *   is part of the content: a retry, re-signed with a new timestamp, is caught by its event id.
 * - Jira: every body carries Jira's millisecond `timestamp` of the event.
 * - Sentry: `event_alert`/`error` bodies carry the event's id; an issue webhook repeating an
 *   identical state (resolved, unresolved, resolved again with nothing else changed) within the
 *   window is taken as the same delivery: it would start a run on the same facts.
 * - Custom routes: a sender that sends one fixed body again on purpose must sign a timestamp
 *   (`{timestamp}.{body}`) so that each sending is new content; without one its identical
 *   bodies are one delivery per window, as they already were without a delivery id header.
 * So a duplicate by content is never a new event the gateway should run, while a replay
 * without the secret can only ever repeat content already claimed.
 */
export class DeliveryDedup {
  constructor(
    private readonly redis: RedisClient,
    private readonly options: { keyPrefix: string; windowMs: number },
  ) {}

  async claim(provider: string, sourceId: string, deliveryId: string, content: SignedContent): Promise<Claim> {
    const { key, contentKey } = this.keys(provider, sourceId, deliveryId, content);
    const reply = (await storeCall(() =>
      runScript(this.redis, CLAIM_SCRIPT, [key, contentKey], [this.options.windowMs, deliveryId]),
    )) as ClaimReply;
    return claimOf(reply, key);
  }

  /** The claim's key for the delivery id, and the key for its signed content. */
  keys(
    provider: string,
    sourceId: string,
    deliveryId: string,
    content: SignedContent,
  ): { key: string; contentKey: string } {
    const key = `${this.options.keyPrefix}dedup:${provider}:${encodeURIComponent(sourceId)}:${encodeURIComponent(deliveryId)}`;
    const signed = content.timestamp === undefined ? content.bodySha256 : `${content.bodySha256}@${content.timestamp}`;
    const contentKey = `${this.options.keyPrefix}replay:${encodeURIComponent(content.route)}:${encodeURIComponent(signed)}`;
    return { key, contentKey };
  }

  get windowMs(): number {
    return this.options.windowMs;
  }

  /** Records the task a claimed delivery became, for the duplicates that follow. */
  async settle(key: string, taskId: string): Promise<void> {
    await storeCall(() => this.redis.set(key, taskId, "PX", this.options.windowMs, "XX"));
  }
}

/** The claim a script's reply stands for; `key` is the claim's own. */
export function claimOf([outcome, taskId, replayOf]: ClaimReply, key: string): Claim {
  if (outcome === "fresh") return { fresh: true, key };
  const task = taskId === PENDING ? "" : (taskId ?? "");
  return outcome === "replay"
    ? { fresh: false, taskId: task, replayOf: replayOf ?? "" }
    : { fresh: false, taskId: task };
}
