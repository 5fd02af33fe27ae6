import { mkdirSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import type { DatabaseConfig } from "./config.js";

/** A row as the query returns it: column name to value (Date, string, number, Uint8Array, null). */
export type Row = Record<string, unknown>;

/** What both databases answer the same way: parameterized SQL, `$1`… */
export interface Queryable {
  query<R extends object = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs statements without parameters, several at once (migrations). */
  exec(sql: string): Promise<void>;
}

/**
 * The read model's database: a PostgreSQL server through `pg`, or PGlite (PostgreSQL compiled to
 * WebAssembly, in this process, its files on disk), so that a development mesh needs no database
 * server. The SQL is the same on both; what differs is kept here.
 */
export interface Database extends Queryable {
  readonly kind: DatabaseConfig["kind"];
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls `onPayload` for every NOTIFY on `channel` from any connection (other replicas
   * included), until the returned function is called. PostgreSQL only: PGlite has no other
   * replicas to hear from.
   */
  listen?(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** Node's network errors, and PostgreSQL's "the server is going away or not yet there" (class 57P, 08). */
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "57P01",
  "57P02",
  "57P03",
]);

/**
 * The read model's database cannot be reached, as opposed to a query that failed: callers get
 * UNAVAILABLE (worth retrying) instead of INTERNAL.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return err instanceof Error && /Connection terminated/.test(err.message);
  return UNAVAILABLE_CODES.has(code) || code.startsWith("08");
}

export interface OpenOptions {
  /**
   * The schema every table is in (PostgreSQL only), created when missing: how tests share one
   * database. `public` when omitted.
   */
  schema?: string;
}

export async function openDatabase(config: DatabaseConfig, options: OpenOptions = {}): Promise<Database> {
  return config.kind === "postgres" ? openPostgres(config.url, options.schema) : openPglite(config.dataDir);
}

async function openPostgres(url: string, schema: string | undefined): Promise<Database> {
  if (schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name "${schema}"`);
  const connection = {
    connectionString: url,
    ...(schema !== undefined && { options: `-c search_path=${schema}` }),
  };
  if (schema !== undefined) {
    const setup = new pg.Client({ connectionString: url });
    await setup.connect();
    try {
      await setup.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } finally {
      await setup.end();
    }
  }
  const pool = new pg.Pool({ ...connection, max: 10 });
  // An idle client's error (the server restarted) is the pool's to replace, not the process's to die of.
  pool.on("error", () => {});
  const run = async <R extends object>(client: pg.Pool | pg.PoolClient, sql: string, params?: readonly unknown[]) =>
    (await client.query(sql, params as unknown[] | undefined)).rows as R[];
  // Fail at start, naming the cause, rather than at the first read.
  try {
    await run(pool, "SELECT 1");
  } catch (err) {
    await pool.end();
    throw err;
  }
  const listeners = new Set<pg.Client>();
  return {
    kind: "postgres",
    query: (sql, params) => run(pool, sql, params),
    exec: async (sql) => {
      await pool.query(sql);
    },
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await fn({
          query: (sql, params) => run(client, sql, params),
          exec: async (sql) => {
            await client.query(sql);
          },
        });
        await client.query("COMMIT");
        return result;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async listen(channel, onPayload) {
      // LISTEN holds its session: one connection of its own, outside the pool. One that is lost
      // (the server restarted) is not reopened: watches then see new events at their next poll.
      const client = new pg.Client(connection);
      client.on("error", () => {});
      await client.connect();
      client.on("notification", (message) => {
        if (message.channel === channel) onPayload(message.payload ?? "");
      });
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      listeners.add(client);
      return async () => {
        listeners.delete(client);
        await client.end().catch(() => {});
      };
    },
    async close() {
      await Promise.all([...listeners].map((client) => client.end().catch(() => {})));
      await pool.end();
    },
  };
}

/**
 * PGlite is one connection in this process: its queries queue behind each other and a
 * transaction holds it until it ends. Only one process may open its data directory, so a
 * dashboard on PGlite runs as a single replica.
 */
async function openPglite(dataDir: string): Promise<Database> {
  mkdirSync(dataDir, { recursive: true });
  const db = await PGlite.create(dataDir);
  const run = async <R extends object>(
    target: { query: PGlite["query"] },
    sql: string,
    params?: readonly unknown[],
  ): Promise<R[]> => (await target.query<R>(sql, params as unknown[] | undefined)).rows;
  return {
    kind: "pglite",
    query: (sql, params) => run(db, sql, params),
    exec: async (sql) => {
      await db.exec(sql);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: (sql, params) => run(tx, sql, params),
          exec: async (sql) => {
            await tx.exec(sql);
          },
        }),
      ),
    close: () => db.close(),
  };
}
