import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  CostSchema,
  type GetAnalyticsResponse,
  GetAnalyticsResponseSchema,
  PercentilesSchema,
  SubjectCountSchema,
  TaskCountSchema,
} from "../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { Queryable } from "./db.js";

export interface AnalyticsRange {
  startMs: number;
  endMs: number;
  bucketMs: number;
}

const DAY_MS = 86_400_000;
const MAX_BUCKETS = 1_000;

/** The proto's defaults: the last 7 days; hourly buckets up to 2 days, else daily. Throws RangeError for a bad range. */
export function analyticsRange(
  start: number | undefined,
  end: number | undefined,
  bucket: number | undefined,
  now: number,
): AnalyticsRange {
  const endMs = end ?? now;
  const startMs = start ?? endMs - 7 * DAY_MS;
  if (endMs < startMs) throw new RangeError("end_time is before start_time");
  const bucketMs = bucket ?? (endMs - startMs <= 2 * DAY_MS ? 3_600_000 : DAY_MS);
  if (bucketMs < 1_000) throw new RangeError("bucket must be at least a second");
  if ((endMs - startMs) / bucketMs > MAX_BUCKETS) {
    throw new RangeError(`bucket too small: the range would have more than ${MAX_BUCKETS} buckets`);
  }
  return { startMs, endMs, bucketMs };
}

const ENDED = [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD, TaskState.CANCELED];

/** Aggregates over the tasks created in the range, each in one query the database computes. */
export async function analytics(q: Queryable, range: AnalyticsRange): Promise<GetAnalyticsResponse> {
  const inRange = "t.create_time >= $1::timestamptz AND t.create_time < $2::timestamptz";
  const bounds = [new Date(range.startMs), new Date(range.endMs)];
  const [overTime, outcomes, queueWait, runDuration, perDay, perRoute, perRepository, subjects] = await Promise.all([
    q.query<{ bucket: number; provider: number; state: number; n: number }>(
      `SELECT (floor(extract(epoch FROM t.create_time) * 1000 / $3::float8) * $3::float8)::float8 AS bucket,
         t.provider, t.state, count(*)::int AS n
       FROM tasks t WHERE ${inRange} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
      [...bounds, range.bucketMs],
    ),
    q.query<{ succeeded: number; ended: number }>(
      `SELECT count(*) FILTER (WHERE t.state = ${TaskState.SUCCEEDED})::int AS succeeded,
         count(*) FILTER (WHERE t.state IN (${ENDED.join(", ")}))::int AS ended
       FROM tasks t WHERE ${inRange}`,
      bounds,
    ),
    percentiles(
      q,
      "extract(epoch FROM t.first_lease_time - t.create_time)",
      `FROM tasks t WHERE ${inRange} AND t.first_lease_time IS NOT NULL`,
      bounds,
    ),
    percentiles(
      q,
      "extract(epoch FROM a.end_time - a.start_time)",
      `FROM attempts a JOIN tasks t ON t.id = a.task_id
       WHERE ${inRange} AND a.start_time IS NOT NULL AND a.end_time IS NOT NULL`,
      bounds,
    ),
    costs(q, "to_char(t.create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD')", inRange, bounds, "key"),
    costs(q, "t.route_id", `${inRange} AND t.route_id <> ''`, bounds, "cost"),
    costs(q, "t.repository", `${inRange} AND t.repository <> ''`, bounds, "cost"),
    q.query<{ provider: number; subject_key: string; title: string; n: number }>(
      `SELECT t.provider, t.subject_key, max(t.title) AS title, count(*)::int AS n
       FROM tasks t WHERE ${inRange} AND t.subject_key <> ''
       GROUP BY t.provider, t.subject_key ORDER BY n DESC, t.subject_key LIMIT 10`,
      bounds,
    ),
  ]);
  const { succeeded = 0, ended = 0 } = outcomes[0] ?? {};
  return create(GetAnalyticsResponseSchema, {
    tasksOverTime: overTime.map((row) =>
      create(TaskCountSchema, {
        bucketStartTime: timestampFromMs(Number(row.bucket)),
        provider: row.provider,
        state: row.state,
        count: BigInt(row.n),
      }),
    ),
    successRate: ended === 0 ? 0 : succeeded / ended,
    queueWait,
    runDuration,
    costPerDay: perDay,
    costByRoute: perRoute,
    costByRepository: perRepository,
    busiestSubjects: subjects.map((row) =>
      create(SubjectCountSchema, {
        provider: row.provider,
        subjectKey: row.subject_key,
        title: row.title,
        count: BigInt(row.n),
      }),
    ),
    bucket: durationFromMs(range.bucketMs),
  });
}

async function percentiles(q: Queryable, seconds: string, from: string, bounds: Date[]) {
  const [row] = await q.query<{ p: number[] | null; n: number }>(
    `SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]::float8[]) WITHIN GROUP (ORDER BY (${seconds})::float8) AS p,
       count(*)::int AS n ${from}`,
    bounds,
  );
  const [p50 = 0, p90 = 0, p99 = 0] = (row?.p ?? []).map(Number);
  return create(PercentilesSchema, {
    p50: durationFromMs(Math.round(p50 * 1000)),
    p90: durationFromMs(Math.round(p90 * 1000)),
    p99: durationFromMs(Math.round(p99 * 1000)),
    count: BigInt(row?.n ?? 0),
  });
}

async function costs(q: Queryable, key: string, where: string, bounds: Date[], order: "key" | "cost") {
  const rows = await q.query<{ key: string; cost: number; input: number; output: number; n: number }>(
    `SELECT ${key} AS key, sum(t.cost_usd)::float8 AS cost, sum(t.input_tokens)::float8 AS input,
       sum(t.output_tokens)::float8 AS output, count(*)::int AS n
     FROM tasks t WHERE ${where} GROUP BY 1 ORDER BY ${order === "key" ? "1" : "2 DESC, 1"}`,
    bounds,
  );
  return rows.map((row) =>
    create(CostSchema, {
      key: row.key,
      costUsd: Number(row.cost),
      inputTokens: BigInt(Math.round(Number(row.input))),
      outputTokens: BigInt(Math.round(Number(row.output))),
      tasks: BigInt(row.n),
    }),
  );
}
