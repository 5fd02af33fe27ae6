import { EventEmitter, once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";

const RECONNECT_MS = 1_000;

/**
 * Follows the tasks service's health with a long-lived `grpc.health.v1.Health/Watch`, so the
 * outbox forwarder resumes the moment tasks says SERVING instead of at its next backoff.
 */
export class TasksHealth {
  private serving = false;
  private readonly changes = new EventEmitter();
  private readonly stopped = new AbortController();

  constructor(
    private readonly health: Client<typeof Health>,
    private readonly logger: Logger,
  ) {}

  get isServing(): boolean {
    return this.serving;
  }

  /** Keeps watching until `stop`, reconnecting when the stream ends or fails. */
  start(): void {
    void this.watch();
  }

  stop(): void {
    this.stopped.abort();
  }

  /** Resolves when tasks is SERVING (at once if it is), or when `signal` aborts. */
  async untilServing(signal: AbortSignal): Promise<void> {
    if (this.serving) return;
    await once(this.changes, "serving", { signal }).catch(() => {});
  }

  private async watch(): Promise<void> {
    const { signal } = this.stopped;
    while (!signal.aborted) {
      try {
        // A stream, so no deadline: it lives as long as the gateway does.
        for await (const res of this.health.watch({ service: TaskService.typeName }, { signal, timeoutMs: 0 })) {
          this.set(res.status === ServingStatus.SERVING);
        }
      } catch (err) {
        if (!signal.aborted) this.logger.debug({ err }, "tasks health watch ended");
      }
      this.set(false);
      await sleep(RECONNECT_MS, undefined, { signal }).catch(() => {});
    }
  }

  private set(serving: boolean): void {
    if (serving === this.serving) return;
    this.serving = serving;
    this.logger.info({ serving }, serving ? "tasks service is serving" : "tasks service is not serving");
    if (serving) this.changes.emit("serving");
  }
}
