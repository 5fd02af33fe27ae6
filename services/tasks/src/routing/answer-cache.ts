export interface AnswerCacheOptions {
  /** How long an answer is reused: a change at the source counts for at most this long. */
  ttlMs: number;
  /** Bound on the entries, so that many distinct keys cannot grow it without limit. */
  maxEntries: number;
  now?: () => number;
}

/** Answers of another service kept for a while, at most `maxEntries`, the oldest dropped first. */
export class AnswerCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number }>();
  private readonly now: () => number;

  constructor(private readonly options: AnswerCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    return entry && entry.expires > this.now() ? entry.value : undefined;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    if (this.entries.size >= this.options.maxEntries) {
      // Maps iterate in insertion order: the first key is the oldest answer.
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(key, { value, expires: this.now() + this.options.ttlMs });
  }
}
