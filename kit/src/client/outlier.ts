/** When an endpoint is taken out of a downstream's rotation, as Envoy's outlier detection does. */
export interface OutlierOptions {
  /** Outage results in a row (Unavailable, a connection that failed) that eject an endpoint. Default 3. */
  consecutiveFailures?: number;
  /** An ejection lasts this long times the number of times the endpoint was ejected. Default 1s. */
  baseEjectionMs?: number;
  /** Upper bound of an ejection. Default 30s. */
  maxEjectionMs?: number;
}

/** What a downstream's endpoint is to the picker. */
export type EndpointCondition = "serving" | "not_serving" | "ejected";

/**
 * One endpoint's standing: what its health watch last said, and its outlier record. Pure: the
 * time comes in as `now`, so that tests drive it with a clock of their own.
 */
export class EndpointRecord {
  /** What its health watch says; serving until told otherwise, like a host Envoy has not checked yet. */
  serving = true;
  /** Outage results since its last success. */
  private failuresInARow = 0;
  /** Times ejected; an ejection lasts this many base ejection times. */
  private ejectionCount = 0;
  /** When its ejection ends (0: never ejected). */
  private ejectedUntilMs = 0;
  /** When it last returned from an ejection. */
  private returnedAtMs = 0;

  constructor(
    readonly origin: string,
    private readonly options: Required<OutlierOptions>,
  ) {}

  /** Whether calls may be sent to it now: serving, and any ejection over. */
  eligible(now: number): boolean {
    return this.serving && now >= this.ejectedUntilMs;
  }

  condition(now: number): EndpointCondition {
    if (now < this.ejectedUntilMs) return "ejected";
    return this.serving ? "serving" : "not_serving";
  }

  get ejections(): number {
    return this.ejectionCount;
  }

  get ejectedUntil(): number {
    return this.ejectedUntilMs;
  }

  /**
   * The endpoint answered. An endpoint that has stayed in for a whole maximum ejection time since
   * it last came back starts over at the base ejection time, as Envoy lowers its multiplier.
   */
  recordSuccess(now: number): void {
    this.failuresInARow = 0;
    if (this.ejectionCount > 0 && now >= this.ejectedUntilMs + this.options.maxEjectionMs) this.ejectionCount = 0;
  }

  /**
   * An outage result; returns the ejection's length if this one ejected the endpoint. Results of
   * calls sent while it was ejected (panic mode, or before the ejection) do not extend it.
   */
  recordOutage(now: number): number | undefined {
    if (now < this.ejectedUntilMs) return undefined;
    this.failuresInARow++;
    if (this.failuresInARow < this.options.consecutiveFailures) return undefined;
    this.failuresInARow = 0;
    this.ejectionCount++;
    const durationMs = Math.min(this.options.maxEjectionMs, this.options.baseEjectionMs * this.ejectionCount);
    this.ejectedUntilMs = now + durationMs;
    return durationMs;
  }

  /** Marks the end of an ejection as seen, once; true the first time after it ended. */
  noteReturn(now: number): boolean {
    if (this.ejectedUntilMs === 0 || now < this.ejectedUntilMs || this.returnedAtMs >= this.ejectedUntilMs)
      return false;
    this.returnedAtMs = this.ejectedUntilMs;
    return true;
  }
}

export function outlierOptions(options: OutlierOptions = {}): Required<OutlierOptions> {
  const resolved = {
    consecutiveFailures: options.consecutiveFailures ?? 3,
    baseEjectionMs: options.baseEjectionMs ?? 1_000,
    maxEjectionMs: options.maxEjectionMs ?? 30_000,
  };
  if (!(resolved.consecutiveFailures >= 1)) throw new Error("outlier detection needs consecutiveFailures ≥ 1");
  if (!(resolved.baseEjectionMs > 0 && resolved.maxEjectionMs >= resolved.baseEjectionMs)) {
    throw new Error("outlier detection needs 0 < baseEjectionMs ≤ maxEjectionMs");
  }
  return resolved;
}

/**
 * Round robin over the endpoints eligible now; when none is (all ejected or not serving), over
 * all of them, as Envoy's panic mode does: the calls then fail fast with Unavailable, which the
 * downstream's breaker counts, rather than waiting for an endpoint that may never come.
 *
 * Round robin rather than least outstanding requests: the mesh's long streams (a worker's lease
 * stream, a dashboard's Watch) stay open for minutes, so outstanding counts would measure who
 * holds a stream, not who is busy; and replicas of one service are alike.
 */
export class RoundRobinPicker {
  private next = 0;

  pick(endpoints: readonly EndpointRecord[], now: number): EndpointRecord | undefined {
    const count = endpoints.length;
    if (count === 0) return undefined;
    for (let tried = 0; tried < count; tried++) {
      const endpoint = endpoints[(this.next + tried) % count]!;
      if (endpoint.eligible(now)) {
        this.next = (this.next + tried + 1) % count;
        return endpoint;
      }
    }
    const endpoint = endpoints[this.next % count]!;
    this.next = (this.next + 1) % count;
    return endpoint;
  }
}
