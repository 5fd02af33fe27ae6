import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useMemo, useState } from "react";
import type { Cost, GetAnalyticsResponse, Percentiles } from "../../../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { GetAnalyticsRequestSchema } from "../../../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import {
  dashboard,
  durationMillis,
  formatCount,
  formatDuration,
  formatUsd,
  providerLabel,
  stateLabel,
} from "../api.js";
import { Chart, type ChartSeries, PALETTE } from "../Chart.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader } from "../components.js";
import { useLoad } from "../hooks.js";

const RANGES = [
  { value: "1", label: "Last 24 hours" },
  { value: "7", label: "Last 7 days" },
  { value: "30", label: "Last 30 days" },
];

const DAY_MS = 86_400_000;
const integer = (value: number) => (Number.isInteger(value) ? String(value) : "");
const usd = (value: number) => formatUsd(value);

/** The range asked for, in seconds since the epoch. */
interface Range {
  start: number;
  end: number;
}

/**
 * Every bucket start across the range, on the server's grid (anchored at a bucket it counted
 * in), so that the chart spans the range asked for and an empty bucket shows as 0.
 */
function bucketStarts(analytics: GetAnalyticsResponse, range: Range): number[] {
  const step = durationMillis(analytics.bucket) / 1000;
  const counted = analytics.tasksOverTime.map((count) => timestampDate(count.bucketStartTime!).getTime() / 1000);
  if (step <= 0) return [...new Set(counted)].sort((a, b) => a - b);
  const anchor = counted[0] ?? Math.floor(range.start / step) * step;
  const first = anchor - Math.floor((anchor - range.start) / step) * step;
  const all: number[] = [];
  for (let at = first; at < range.end; at += step) all.push(at);
  return all;
}

/** Every UTC day of the range (seconds at its midnight) with what was spent on it, 0 for none. */
function costByDay(analytics: GetAnalyticsResponse, range: Range): { days: number[]; costs: number[] } {
  const spent = new Map(analytics.costPerDay.map((cost) => [Date.parse(`${cost.key}T00:00:00Z`) / 1000, cost.costUsd]));
  const days: number[] = [];
  for (let day = Math.floor(range.start / 86_400) * 86_400; day < range.end; day += 86_400) days.push(day);
  return { days, costs: days.map((day) => spent.get(day) ?? 0) };
}

/** Tasks per bucket, one series per value of `keyOf` (provider or state). */
function countsBy(analytics: GetAnalyticsResponse, xs: number[], keyOf: (provider: number, state: number) => number) {
  const index = new Map(xs.map((x, i) => [x, i]));
  const byKey = new Map<number, number[]>();
  for (const count of analytics.tasksOverTime) {
    const key = keyOf(count.provider, count.state);
    const values = byKey.get(key) ?? xs.map(() => 0);
    const at = index.get(timestampDate(count.bucketStartTime!).getTime() / 1000);
    if (at !== undefined) values[at]! += Number(count.count);
    byKey.set(key, values);
  }
  return [...byKey.entries()].sort(([a], [b]) => a - b);
}

function PercentileRow({ label, percentiles }: { label: string; percentiles: Percentiles | undefined }) {
  return (
    <tr>
      <th scope="row">{label}</th>
      <td className="number">{formatDuration(percentiles?.p50)}</td>
      <td className="number">{formatDuration(percentiles?.p90)}</td>
      <td className="number">{formatDuration(percentiles?.p99)}</td>
      <td className="number">{formatCount(percentiles?.count ?? 0n)}</td>
    </tr>
  );
}

/** Costs as a table with a bar per row, the largest full width. */
function CostTable({ title, keyLabel, costs }: { title: string; keyLabel: string; costs: Cost[] }) {
  const most = Math.max(...costs.map((cost) => cost.costUsd), 0);
  return (
    <section className="card" aria-label={title}>
      <h2>{title}</h2>
      {costs.length === 0 ? (
        <p className="muted">Nothing spent in this range.</p>
      ) : (
        <table aria-label={title}>
          <ColumnHeads
            columns={[keyLabel, { numeric: "Cost" }, { numeric: "Tasks" }, { numeric: "Tokens in / out" }]}
          />
          <tbody>
            {costs.map((cost) => (
              <tr key={cost.key}>
                <td className="mono">
                  {cost.key || "—"}
                  <span
                    className="bar"
                    style={{ width: `${most > 0 ? (100 * cost.costUsd) / most : 0}%` }}
                    aria-hidden="true"
                  />
                </td>
                <td className="number">{formatUsd(cost.costUsd)}</td>
                <td className="number">{formatCount(cost.tasks)}</td>
                <td className="number">
                  {formatCount(cost.inputTokens)} / {formatCount(cost.outputTokens)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Charts({ analytics, range }: { analytics: GetAnalyticsResponse; range: Range }) {
  const xs = useMemo(() => bucketStarts(analytics, range), [analytics, range]);
  const byProvider = useMemo<ChartSeries[]>(
    () =>
      countsBy(analytics, xs, (provider) => provider).map(([provider, values], i) => ({
        label: providerLabel(provider),
        color: PALETTE[i % PALETTE.length]!,
        values,
      })),
    [analytics, xs],
  );
  const byState = useMemo<ChartSeries[]>(
    () =>
      countsBy(analytics, xs, (_, state) => state).map(([state, values], i) => ({
        label: stateLabel(state),
        color: PALETTE[i % PALETTE.length]!,
        values,
      })),
    [analytics, xs],
  );
  const { days, costs } = useMemo(() => costByDay(analytics, range), [analytics, range]);
  const costPerDay = useMemo<ChartSeries[]>(
    () => [{ label: "cost (USD)", color: PALETTE[0]!, values: costs }],
    [costs],
  );
  const ended = analytics.tasksOverTime.reduce((sum, count) => sum + Number(count.count), 0);

  return (
    <>
      <div className="stats">
        <section className="stat card" aria-labelledby="success-heading">
          <h2 id="success-heading">Success rate</h2>
          <p className="big" aria-describedby="success-heading">
            {(analytics.successRate * 100).toFixed(1)}%
          </p>
          <p className="muted">
            of the tasks that ended; {formatCount(ended)} {ended === 1 ? "task" : "tasks"} created in this range
          </p>
        </section>
        <section className="card" aria-labelledby="latency-heading">
          <h2 id="latency-heading">Queue wait and run duration</h2>
          <table aria-labelledby="latency-heading">
            <ColumnHeads
              columns={[{ numeric: "p50" }, { numeric: "p90" }, { numeric: "p99" }, { numeric: "samples" }]}
              corner
            />
            <tbody>
              <PercentileRow label="Queue wait" percentiles={analytics.queueWait} />
              <PercentileRow label="Run duration" percentiles={analytics.runDuration} />
            </tbody>
          </table>
        </section>
      </div>
      <div className="charts">
        <Chart title="Tasks over time by provider" xs={xs} series={byProvider} formatValue={integer} />
        <Chart title="Tasks over time by outcome" xs={xs} series={byState} formatValue={integer} />
        <Chart title="Cost per day" xs={days} series={costPerDay} bars formatValue={usd} />
      </div>
      <div className="tables">
        <CostTable title="Cost by route" keyLabel="Route" costs={analytics.costByRoute} />
        <CostTable title="Cost by repository" keyLabel="Repository" costs={analytics.costByRepository} />
      </div>
      <section className="card" aria-labelledby="subjects-heading">
        <h2 id="subjects-heading">Busiest subjects</h2>
        <table aria-labelledby="subjects-heading">
          <ColumnHeads columns={["Subject", "Provider", "Title", { numeric: "Tasks" }]} />
          <tbody>
            {analytics.busiestSubjects.map((subject) => (
              <tr key={`${subject.provider}:${subject.subjectKey}`}>
                <td className="mono">{subject.subjectKey}</td>
                <td>{providerLabel(subject.provider)}</td>
                <td>{subject.title}</td>
                <td className="number">{formatCount(subject.count)}</td>
              </tr>
            ))}
            {analytics.busiestSubjects.length === 0 && (
              <tr>
                <td colSpan={4}>No tasks in this range.</td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
    </>
  );
}

export function AnalyticsPage() {
  const [days, setDays] = useState("7");
  const { data, error, loading } = useLoad(
    async (signal) => {
      const end = new Date();
      const start = new Date(end.getTime() - Number(days) * DAY_MS);
      const request = create(GetAnalyticsRequestSchema, {
        startTime: timestampFromDate(start),
        endTime: timestampFromDate(end),
      });
      const analytics = await dashboard.getAnalytics(request, { signal });
      return { analytics, range: { start: start.getTime() / 1000, end: end.getTime() / 1000 } };
    },
    [days],
  );

  return (
    <>
      <PageHeader title="Analytics">
        <label>
          Range{" "}
          <select value={days} onChange={(event) => setDays(event.target.value)}>
            {RANGES.map((range) => (
              <option key={range.value} value={range.value}>
                {range.label}
              </option>
            ))}
          </select>
        </label>
      </PageHeader>
      <ErrorNotice error={error} />
      {!data && <Loading loading={loading} />}
      {data && <Charts analytics={data.analytics} range={data.range} />}
    </>
  );
}
