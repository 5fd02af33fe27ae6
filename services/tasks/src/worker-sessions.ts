import { randomUUID } from "node:crypto";
import { type Logger, type RedisClient, runScript } from "@hookmesh/kit";
import { storeCall } from "./errors.js";

export interface WorkerSessionsOptions {
  keyPrefix: string;
  /** How often a session's stream carries a message, so that its worker knows it is heard. */
  pingMs: number;
  /** How long after a session's stream ends its leases are given back, unless it is opened again. */
  releaseAfterMs: number;
}

export interface SessionEnd {
  /** Gives back the session's leases; says how many. */
  releaseSession(sessionId: string, workerId: string): Promise<number>;
}

/** One open stream of a session. */
export interface SessionStream {
  id: string;
  workerId: string;
  /** Whether the session asked for was opened again with its leases. */
  resumed: boolean;
  /** This stream's mark in the session's record: only the stream holding it may release. */
  token: string;
}

/**
 * How long a session's record lives without a refresh. Refreshed while its stream is open, so
 * it outlives any worker; a record that expired only means an ended session is not released
 * early (its leases expire as before) and cannot be opened again.
 */
const SESSION_TTL_MS = 60 * 60_000;

/**
 * Opens a session again unless it was released. KEYS: session. ARGV: the new stream's mark, ttl.
 */
const RESUME_SCRIPT = `
local mark = redis.call('GET', KEYS[1])
if not mark or mark == 'released' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

/**
 * Marks a session released if the ended stream still holds it (no stream opened it again).
 * KEYS: session. ARGV: the ended stream's mark, ttl.
 */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'released', 'PX', ARGV[2])
return 1
`;

/**
 * Workers' sessions (WorkerService.OpenSession): a worker is known dead when its session's
 * stream ends and no stream, on any replica, opens the session again within `releaseAfterMs`;
 * its leases are then given back at once rather than when they expire.
 *
 * A session's record in Redis holds the mark of the stream that holds it. A stream that ends
 * waits `releaseAfterMs`, then releases only if its mark is still there, atomically: a worker
 * that opened its session again meanwhile (a network blip, a replica gone) keeps its leases,
 * and one that opens it after the release is told so (`resumed` false). The worker's half of
 * the bargain (stop its runs after half of `releaseAfterMs` without a message) is what keeps
 * a live worker's task from running twice at once; the lease ids still fence the old holder.
 */
export class WorkerSessions {
  private readonly releases = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly end: SessionEnd,
    readonly options: WorkerSessionsOptions,
    private readonly logger: Logger,
  ) {}

  /** Opens `requested` again if it may be, else a new session. */
  async open(workerId: string, requested: string): Promise<SessionStream> {
    const token = randomUUID();
    const mark = `open:${token}`;
    if (requested) {
      const resumed = await storeCall(() =>
        runScript(this.redis, RESUME_SCRIPT, [this.key(requested)], [mark, String(SESSION_TTL_MS)]),
      );
      if (resumed === 1) return { id: requested, workerId, resumed: true, token };
    }
    const id = randomUUID();
    await storeCall(() => this.redis.set(this.key(id), mark, "PX", SESSION_TTL_MS));
    return { id, workerId, resumed: false, token };
  }

  /** Keeps an open session's record alive; called now and then while its stream is open. */
  async refresh(stream: SessionStream): Promise<void> {
    await storeCall(() => this.redis.pexpire(this.key(stream.id), SESSION_TTL_MS));
  }

  /**
   * A session's stream ended: unless another opens the session within `releaseAfterMs`, its
   * leases are given back. `byServer` (this replica is shutting down) releases nothing: the
   * worker is alive and opens its session again elsewhere.
   */
  ended(stream: SessionStream, byServer: boolean): void {
    if (byServer || this.closed) return;
    const timer = setTimeout(() => {
      this.releases.delete(timer);
      void this.release(stream);
    }, this.options.releaseAfterMs);
    timer.unref();
    this.releases.add(timer);
  }

  /** Stops the releases still waiting: their leases expire instead. */
  close(): void {
    this.closed = true;
    for (const timer of this.releases) clearTimeout(timer);
    this.releases.clear();
  }

  private async release(stream: SessionStream): Promise<void> {
    const log = this.logger.child({ sessionId: stream.id, workerId: stream.workerId });
    try {
      const mine = await storeCall(() =>
        runScript(this.redis, RELEASE_SCRIPT, [this.key(stream.id)], [`open:${stream.token}`, String(SESSION_TTL_MS)]),
      );
      if (mine !== 1) return;
      const released = await this.end.releaseSession(stream.id, stream.workerId);
      log.info({ released }, "worker session ended: its leases were given back");
    } catch (err) {
      log.warn({ err: (err as Error).message }, "could not release an ended worker session; its leases expire instead");
    }
  }

  private key(sessionId: string): string {
    return `${this.options.keyPrefix}session:${sessionId}`;
  }
}
