import { createHash, randomBytes } from "node:crypto";
import type { Queryable } from "./db.js";

export interface SignInOptions {
  signInTtlMs: number;
  sessionTtlMs: number;
  /** The clock; tests move it. */
  now?: () => number;
}

/** A browser's signed-in session. */
export interface Session {
  /** Who it acts for in the audit log, e.g. `operator "ana" (signed in 2026-12-01T10:00:00.000Z)`. */
  actor: string;
  expireMs: number;
}

/**
 * One-time sign-in links and the browser sessions they start. Only hashes of the secrets are
 * stored (in the read model's database, so that any replica honours them): the link's token
 * and the session id exist in full only in the URL and the cookie.
 */
export class SignIns {
  private readonly now: () => number;

  constructor(
    private readonly db: Queryable,
    private readonly options: SignInOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** A new link token for `name`, usable once before it expires. */
  async createLink(name: string): Promise<{ token: string; expireMs: number }> {
    const now = this.now();
    const token = secret();
    const expireMs = now + this.options.signInTtlMs;
    await this.db.query("DELETE FROM sign_ins WHERE expire_time < $1::timestamptz", [new Date(now)]);
    await this.db.query(
      "INSERT INTO sign_ins (token_hash, name, expire_time) VALUES ($1::text, $2::text, $3::timestamptz)",
      [hash(token), name, new Date(expireMs)],
    );
    return { token, expireMs };
  }

  /**
   * Uses a link token up and starts a session; undefined for a token that is unknown, used or
   * expired. The token is marked used in the same statement that checks it, so two browsers
   * racing with one link get one session.
   */
  async redeem(token: string): Promise<{ sessionId: string; session: Session } | undefined> {
    const now = this.now();
    const [row] = await this.db.query<{ name: string }>(
      `UPDATE sign_ins SET used_time = $2::timestamptz
       WHERE token_hash = $1::text AND used_time IS NULL AND expire_time > $2::timestamptz RETURNING name`,
      [hash(token), new Date(now)],
    );
    if (!row) return undefined;
    const sessionId = secret();
    const session = {
      actor: `operator "${row.name}" (signed in ${new Date(now).toISOString()})`,
      expireMs: now + this.options.sessionTtlMs,
    };
    await this.db.query("DELETE FROM sessions WHERE expire_time < $1::timestamptz", [new Date(now)]);
    await this.db.query(
      "INSERT INTO sessions (id_hash, actor, expire_time) VALUES ($1::text, $2::text, $3::timestamptz)",
      [hash(sessionId), session.actor, new Date(session.expireMs)],
    );
    return { sessionId, session };
  }

  /** The live session with this id; undefined when there is none or it expired. */
  async session(sessionId: string): Promise<Session | undefined> {
    const [row] = await this.db.query<{ actor: string; expire_time: Date }>(
      "SELECT actor, expire_time FROM sessions WHERE id_hash = $1::text AND expire_time > $2::timestamptz",
      [hash(sessionId), new Date(this.now())],
    );
    return row && { actor: row.actor, expireMs: new Date(row.expire_time).getTime() };
  }

  async end(sessionId: string): Promise<void> {
    await this.db.query("DELETE FROM sessions WHERE id_hash = $1::text", [hash(sessionId)]);
  }
}

function secret(): string {
  return randomBytes(32).toString("base64url");
}

function hash(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}
