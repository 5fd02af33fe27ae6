import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseConfig } from "../src/config.js";
import { type Database, openDatabase } from "../src/db.js";
import { migrate } from "../src/migrations.js";

/** The machines' PostgreSQL (trust auth); each test database is a schema of its own in it. */
export const TEST_POSTGRES_URL = process.env.DASHBOARD_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

export const DATABASE_KINDS: readonly DatabaseConfig["kind"][] = ["postgres", "pglite"];

export interface TestDatabase {
  db: Database;
  /** What the dashboard's config would say, for a second connection to the same data. */
  config: DatabaseConfig;
  schema?: string;
  /** Empties every table, for the next test. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** A migrated, empty read model: a fresh schema in PostgreSQL, or PGlite in a temporary directory. */
export async function testDatabase(kind: DatabaseConfig["kind"]): Promise<TestDatabase> {
  let db: Database;
  let config: DatabaseConfig;
  let schema: string | undefined;
  let cleanup: () => Promise<void>;
  if (kind === "postgres") {
    schema = `dashboard_test_${randomBytes(6).toString("hex")}`;
    config = { kind, url: TEST_POSTGRES_URL };
    db = await openDatabase(config, { schema });
    cleanup = async () => {
      await db.query(`DROP SCHEMA ${schema} CASCADE`);
      await db.close();
    };
  } else {
    const dataDir = mkdtempSync(join(tmpdir(), "dashboard-pglite-"));
    config = { kind, dataDir };
    db = await openDatabase(config);
    cleanup = async () => {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    };
  }
  await migrate(db);
  return {
    db,
    config,
    ...(schema !== undefined && { schema }),
    async reset() {
      await db.exec(
        "TRUNCATE tasks, task_events, attempts, audit, sign_ins, sessions; UPDATE projector SET cursor = '', holder = NULL, lease_expire_time = NULL",
      );
    },
    close: cleanup,
  };
}
