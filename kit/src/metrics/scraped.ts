import { Gauge, type Registry } from "prom-client";
import { abortAfter } from "../abort.js";
import type { Logger } from "../logger.js";

/** One sample of a gauge read at scrape time. */
export interface GaugeSample<L extends string> {
  labels?: Partial<Record<L, string>>;
  value: number;
}

export interface ScrapedGaugeOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registry: Registry;
  /** Reads the current values (from Redis, say); it should stop when `signal` aborts. */
  read(signal: AbortSignal): Promise<GaugeSample<L>[]>;
  /** How long a scrape waits for `read`. Default 1 s, well inside Prometheus's 10 s scrape timeout. */
  timeoutMs?: number;
  logger: Logger;
}

/**
 * A gauge whose values are read when Prometheus scrapes, not on a timer: an idle mesh costs
 * nothing, and a value is as fresh as the scrape. A read that fails or takes longer than
 * `timeoutMs` leaves the gauge without a value for that scrape (a labelled gauge without
 * samples, an unlabelled one NaN: unknown, neither stale nor zero), logged, while the rest of the
 * scrape is served.
 */
export function scrapedGauge<L extends string>(options: ScrapedGaugeOptions<L>): Gauge<L> {
  const { logger, name, timeoutMs = 1_000 } = options;
  return new Gauge<L>({
    name,
    help: options.help,
    labelNames: options.labelNames ?? [],
    registers: [options.registry],
    async collect() {
      this.reset();
      const timeout = abortAfter(undefined, timeoutMs);
      const gaveUp = new Promise<never>((_, reject) =>
        timeout.signal.addEventListener("abort", () => reject(new Error(`no answer in ${timeoutMs} ms`)), {
          once: true,
        }),
      );
      try {
        const samples = await Promise.race([options.read(timeout.signal), gaveUp]);
        for (const { labels, value } of samples) {
          if (labels) this.set(labels, value);
          else this.set(value);
        }
      } catch (err) {
        if ((options.labelNames ?? []).length === 0) this.set(Number.NaN);
        logger.warn({ metric: name, err: err instanceof Error ? err.message : String(err) }, "metric not read");
      } finally {
        timeout.clear();
      }
    },
  });
}
