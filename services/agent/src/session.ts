import { setTimeout as sleep } from "node:timers/promises";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@hookmesh/kit";
import type { WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";

export interface WorkerSessionDeps {
  worker: Client<typeof WorkerService>;
  workerId: string;
  logger: Logger;
  /**
   * The session `sessionId` went silent (or the service released it): its leases may be given
   * to another worker from now on, so the runs leased under it must stop at once.
   */
  onLost(sessionId: string): void;
}

/** One session call lasts at most this long; the worker then opens its session again (resumed). */
const SESSION_CALL_MS = 10 * 60_000;
/** First delay before opening a session again after a failure; doubles up to the max. */
const REOPEN_DELAY_MS = 50;
const REOPEN_DELAY_MAX_MS = 1_000;

/**
 * The worker's session with the tasks service (WorkerService.OpenSession): while its stream is
 * open the service knows the worker is alive, and when the stream ends (the worker died, its
 * connection reset) the service gives the session's leases back after `release_after` instead
 * of when they expire. A broken stream is opened again at once, with the session's id, so that
 * a blip keeps the leases.
 *
 * The worker's half: having heard nothing for half of `release_after`, it stops the session's
 * runs (`onLost`), since the service may give their tasks to another worker from then on. The
 * same when the service says the session was already released.
 */
export class WorkerSession {
  private sessionId = "";
  /** Half the service's `release_after`. */
  private stopAfterMs = 0;
  private silence: NodeJS.Timeout | undefined;
  private readonly stopping = new AbortController();
  private holding: Promise<void> | undefined;
  private settleFirst: (() => void) | undefined;
  /** Settles when the session first opens, or when the service turns out to hold none. */
  readonly firstOpened = new Promise<void>((resolve) => (this.settleFirst = resolve));

  constructor(private readonly deps: WorkerSessionDeps) {}

  /** The session to lease under; empty while none is open (leases then only expire). */
  get id(): string {
    return this.sessionId;
  }

  start(): void {
    this.holding ??= this.hold();
  }

  /** Ends the session's stream: the service then gives back whatever is still leased under it. */
  async close(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.silence);
    await this.holding;
  }

  private async hold(): Promise<void> {
    const { worker, workerId, logger } = this.deps;
    const signal = this.stopping.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const stream = worker.openSession(
          { workerId, sessionId: this.sessionId },
          { signal, timeoutMs: SESSION_CALL_MS },
        );
        for await (const message of stream) {
          if (message.releaseAfter) this.opened(message.sessionId, message.resumed, durationMs(message.releaseAfter));
          failures = 0;
          this.heard();
        }
      } catch (err) {
        if (signal.aborted) return;
        const error = ConnectError.from(err);
        if (error.code === Code.Unimplemented) {
          logger.warn(
            "the tasks service holds no worker sessions: a dead worker's tasks come back when its leases expire",
          );
          this.settleFirst?.();
          return;
        }
        if (error.code !== Code.DeadlineExceeded) {
          failures++;
          logger.warn({ code: Code[error.code], error: error.rawMessage }, "worker session broke; opening it again");
        }
      }
      // Also after a stream the service ended itself: a replica shutting down ends each new one.
      const delayMs = Math.min(REOPEN_DELAY_MAX_MS, REOPEN_DELAY_MS * 2 ** Math.max(0, failures - 1));
      await sleep(delayMs, undefined, { signal }).catch(() => {});
    }
  }

  private opened(sessionId: string, resumed: boolean, releaseAfterMs: number): void {
    if (this.sessionId && !resumed) this.lost(this.sessionId, "the tasks service released it");
    this.sessionId = sessionId;
    this.stopAfterMs = releaseAfterMs / 2;
    this.settleFirst?.();
  }

  /** Every message, the first included, restarts the count to silence. */
  private heard(): void {
    clearTimeout(this.silence);
    const sessionId = this.sessionId;
    this.silence = setTimeout(() => this.lost(sessionId, "nothing heard on it"), this.stopAfterMs);
    this.silence.unref();
  }

  private lost(sessionId: string, why: string): void {
    this.deps.logger.warn(
      { sessionId, why },
      "worker session lost: stopping its runs, their tasks may run elsewhere now",
    );
    this.deps.onLost(sessionId);
  }
}
