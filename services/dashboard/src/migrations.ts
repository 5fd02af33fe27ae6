import type { Database } from "./db.js";

/**
 * The read model's schema, one step per version, applied in order at start and never edited
 * once released: a change is a new step. Every statement runs on PostgreSQL and PGlite alike.
 */
export const MIGRATIONS: readonly string[] = [
  `
  -- One row per task: its record as TaskService last reported it (BASIC view, protobuf binary),
  -- and the columns the list's filters and the analytics read.
  CREATE TABLE tasks (
    id text PRIMARY KEY,
    provider int NOT NULL,
    state int NOT NULL,
    route_id text NOT NULL,
    subject_key text NOT NULL,
    title text NOT NULL,
    repository text NOT NULL,
    -- lower(prompt, event text, answer), what the text filter searches.
    search_text text NOT NULL,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL,
    first_lease_time timestamptz,
    cost_usd double precision NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    trace_id text NOT NULL,
    task bytea NOT NULL
  );
  CREATE INDEX tasks_create_time ON tasks (create_time);
  CREATE INDEX tasks_state ON tasks (state, id);
  CREATE INDEX tasks_provider ON tasks (provider, id);
  CREATE INDEX tasks_route ON tasks (route_id, id);

  -- Every task's timeline; seq orders a task's events as they were applied.
  CREATE TABLE task_events (
    seq bigserial PRIMARY KEY,
    task_id text NOT NULL,
    event_id text NOT NULL,
    time timestamptz NOT NULL,
    attempt int NOT NULL,
    event bytea NOT NULL,
    -- The task as it stood after the event, when the event changed its record.
    task bytea,
    UNIQUE (task_id, event_id)
  );

  -- An agent run: from its STARTED event to the event that ended it.
  CREATE TABLE attempts (
    task_id text NOT NULL,
    attempt int NOT NULL,
    start_time timestamptz,
    end_time timestamptz,
    PRIMARY KEY (task_id, attempt)
  );

  -- Where the projector is in TaskService.WatchChanges, and which replica projects.
  CREATE TABLE projector (
    id int PRIMARY KEY CHECK (id = 1),
    cursor text NOT NULL DEFAULT '',
    holder text,
    lease_expire_time timestamptz
  );
  INSERT INTO projector (id) VALUES (1);

  CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    time timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    outcome text NOT NULL,
    detail text NOT NULL
  );

  -- Sign-in links and browser sessions, by the SHA-256 of their secret: a leaked table signs no one in.
  CREATE TABLE sign_ins (
    token_hash text PRIMARY KEY,
    name text NOT NULL,
    expire_time timestamptz NOT NULL,
    used_time timestamptz
  );
  CREATE TABLE sessions (
    id_hash text PRIMARY KEY,
    actor text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz NOT NULL
  );
  `,
];

/**
 * Brings the schema up to date. Replicas starting together take turns: the advisory lock is
 * held for the transaction, so each sees the versions the one before it applied.
 */
export async function migrate(db: Database): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('hookmesh-dashboard-migrations:' || current_schema()))");
    await tx.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, apply_time timestamptz NOT NULL DEFAULT now())",
    );
    const rows = await tx.query<{ version: number }>(
      "SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations",
    );
    for (let version = (rows[0]?.version ?? 0) + 1; version <= MIGRATIONS.length; version++) {
      await tx.exec(MIGRATIONS[version - 1]!);
      await tx.query("INSERT INTO schema_migrations (version) VALUES ($1)", [version]);
    }
  });
}
