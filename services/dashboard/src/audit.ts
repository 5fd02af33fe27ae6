import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type AuditEntry, AuditEntrySchema } from "../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import type { Queryable } from "./db.js";

export interface AuditRecord {
  actor: string;
  action: string;
  target: string;
  /** `OK`, or the error code's proto name (e.g. `INVALID_ARGUMENT`). */
  outcome: string;
  detail: string;
}

export async function recordAudit(q: Queryable, entry: AuditRecord): Promise<void> {
  await q.query(
    "INSERT INTO audit (actor, action, target, outcome, detail) VALUES ($1::text, $2::text, $3::text, $4::text, $5::text)",
    [entry.actor, entry.action, entry.target, entry.outcome, entry.detail],
  );
}

/** Newest first, after (older than) entry `beforeId` when given. */
export async function listAudit(
  q: Queryable,
  pageSize: number,
  beforeId: number | undefined,
): Promise<{ entries: AuditEntry[]; more: boolean }> {
  const rows = await q.query<{ id: string | number; time: Date } & AuditRecord>(
    `SELECT id, time, actor, action, target, outcome, detail FROM audit
     ${beforeId === undefined ? "" : "WHERE id < $2::bigint"} ORDER BY id DESC LIMIT $1::int`,
    beforeId === undefined ? [pageSize + 1] : [pageSize + 1, beforeId],
  );
  return {
    entries: rows.slice(0, pageSize).map((row) =>
      create(AuditEntrySchema, {
        id: String(row.id),
        time: timestampFromDate(new Date(row.time)),
        actor: row.actor,
        action: row.action,
        target: row.target,
        outcome: row.outcome,
        detail: row.detail,
      }),
    ),
    more: rows.length > pageSize,
  };
}
