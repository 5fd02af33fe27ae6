import { clone } from "@bufbuild/protobuf";
import { type RedisClient, runScript } from "@hookmesh/kit";
import { type AgentProfile, AgentProfileSchema, type Route } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { storeCall } from "./errors.js";
import { RouteNotFoundError } from "./routing/routing-rule-store.js";

export interface BudgetOptions {
  /** Every key this module touches starts with it; no other service uses it. */
  keyPrefix: string;
  /** Per-run cap for profiles whose `max_cost_usd` is 0. */
  defaultMaxCostUsd: number;
  /** Per routing rule and UTC day, for rules whose budget names none. */
  defaultDailyBudgetUsd: number;
}

/** Where a routing rule's budget is read, at every check, so that a raised budget applies at once. */
export interface RoutingRules {
  get(id: string): Promise<Route>;
}

/** One run of a task: its spend is counted once however often it is reported. */
export interface RunOfTask {
  routeId: string;
  taskId: string;
  attempt: number;
}

/** A routing rule whose spend of the day has reached its daily budget. */
export interface BudgetSpent {
  routeId: string;
  /** The UTC day, `YYYY-MM-DD`. */
  day: string;
  spentUsd: number;
  limitUsd: number;
  /** Until 00:00 UTC of the next day. */
  resetsInMs: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** A day's spend is read on that day only; a run's counted total only while it reports. */
const SPEND_TTL_SECONDS = 3 * 24 * 60 * 60;

/**
 * Adds the part of a run's running total not counted yet to its rule's spend of the day.
 * Runs report totals, not increments, so a repeated or reordered report adds nothing.
 * KEYS: the run's counted total, the rule's spend of the day. ARGV: the total, the TTL.
 */
const RECORD_SCRIPT = `
local counted = tonumber(redis.call('GET', KEYS[1]) or '0')
local total = tonumber(ARGV[1])
if total <= counted then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('INCRBYFLOAT', KEYS[2], tostring(total - counted))
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
`;

/**
 * What routing rules' runs may cost: the per-run cap a task carries to its worker, and each
 * rule's spend per UTC day, kept in Redis as `budget:spend:{rule}:{day}`. Spend counts when
 * a worker reports it, against the day of the report, so a run across midnight is split.
 */
export class RouteBudgets {
  constructor(
    private readonly redis: RedisClient,
    private readonly rules: RoutingRules,
    private readonly options: BudgetOptions,
  ) {}

  /** The profile a task of `route` runs with: `max_cost_usd` is the cap in force (0 = none). */
  profileWithRunCap(route: Route, profile: AgentProfile): AgentProfile {
    const capped = clone(AgentProfileSchema, profile);
    if (capped.maxCostUsd === 0 && !route.budget?.unlimitedPerRun) capped.maxCostUsd = this.options.defaultMaxCostUsd;
    return capped;
  }

  /** Counts a run's running total (US dollars) against its rule's spend of the day of `now`. */
  async record(run: RunOfTask, totalUsd: number, now: number): Promise<void> {
    if (run.routeId === "" || !(totalUsd > 0) || !Number.isFinite(totalUsd)) return;
    await storeCall(() =>
      runScript(
        this.redis,
        RECORD_SCRIPT,
        [this.key("run", run.taskId, String(run.attempt)), this.spendKey(run.routeId, utcDay(now))],
        [String(totalUsd), SPEND_TTL_SECONDS],
      ),
    );
  }

  /**
   * The rule's spend of the day, when it has reached the rule's daily budget. The rule and the
   * spend are read at once, one round trip: the spend is read even for a rule without a limit.
   */
  async spent(routeId: string, now: number): Promise<BudgetSpent | undefined> {
    if (routeId === "") return undefined;
    const day = utcDay(now);
    const [limitUsd, spend] = await Promise.all([
      this.dailyLimitUsd(routeId),
      storeCall(() => this.redis.get(this.spendKey(routeId, day))),
    ]);
    if (limitUsd === undefined) return undefined;
    const spentUsd = Number(spend ?? 0);
    if (spentUsd < limitUsd) return undefined;
    return { routeId, day, spentUsd, limitUsd, resetsInMs: DAY_MS - (now % DAY_MS) };
  }

  /** True the first time a task is found waiting for its rule's budget on the day of `now`. */
  async firstWait(taskId: string, now: number): Promise<boolean> {
    const set = await storeCall(() =>
      this.redis.set(this.key("waiting", taskId, utcDay(now)), "1", "EX", SPEND_TTL_SECONDS, "NX"),
    );
    return set === "OK";
  }

  /** The rule's daily budget; undefined when it has none. A deleted rule's tasks keep the default. */
  private async dailyLimitUsd(routeId: string): Promise<number | undefined> {
    const route = await this.rules.get(routeId).catch((err: unknown) => {
      if (err instanceof RouteNotFoundError) return undefined;
      throw err;
    });
    if (route?.budget?.unlimitedPerDay) return undefined;
    return route?.budget?.maxCostUsdPerDay || this.options.defaultDailyBudgetUsd;
  }

  private spendKey(routeId: string, day: string): string {
    return this.key("spend", routeId, day);
  }

  private key(...parts: string[]): string {
    return `${this.options.keyPrefix}budget:${parts.join(":")}`;
  }
}

/** The UTC day of `ms`, `YYYY-MM-DD`. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
