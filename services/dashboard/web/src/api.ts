import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { DashboardService } from "../../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { Provider } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import { DeliveryStatus } from "../../../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { RunOutcome, TaskStage, TaskState } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";

/**
 * The dashboard's API, on the same origin as the page: the session cookie that the sign-in URL
 * set goes with every call (fetch's default `same-origin` credentials), and the Connect protocol
 * (JSON) keeps the calls readable in the browser's network panel.
 */
export const dashboard = createClient(
  DashboardService,
  createConnectTransport({ baseUrl: `${location.origin}/api`, useBinaryFormat: false }),
);

/** The words to show for an error; a missing or expired session says how to sign in again. */
export function errorMessage(error: unknown): string {
  const connectError = ConnectError.from(error);
  if (connectError.code === Code.Unauthenticated) {
    return "Not signed in, or the session expired: run `npx hookmesh dashboard` and open the URL it prints.";
  }
  return `${Code[connectError.code]}: ${connectError.rawMessage}`;
}

/** An enum value's name in lower case (the generated enums drop the proto's prefix): RUNNING → running. */
function enumLabel(names: Record<number, string>, value: number): string {
  const name = names[value];
  return name === undefined ? String(value) : name.toLowerCase().replaceAll("_", " ");
}

export const providerLabel = (value: Provider) => enumLabel(Provider, value);
export const stateLabel = (value: TaskState) => enumLabel(TaskState, value);
export const stageLabel = (value: TaskStage) => enumLabel(TaskStage, value);
export const outcomeLabel = (value: RunOutcome) => enumLabel(RunOutcome, value);
export const deliveryStatusLabel = (value: DeliveryStatus) => enumLabel(DeliveryStatus, value);

/** The values of a proto enum other than UNSPECIFIED, for a filter's options. */
export function enumValues(names: Record<string, string | number>): number[] {
  return Object.values(names).filter((value): value is number => typeof value === "number" && value !== 0);
}

export const PROVIDERS = enumValues(Provider) as Provider[];
export const STATES = enumValues(TaskState) as TaskState[];
export const DELIVERY_STATUSES = enumValues(DeliveryStatus) as DeliveryStatus[];

/** The states a task stays in until an operator retries it, or for good. */
export const FINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.SUCCEEDED,
  TaskState.FAILED,
  TaskState.CANCELED,
  TaskState.DEAD,
  TaskState.IGNORED,
]);

export const RETRYABLE_STATES: ReadonlySet<TaskState> = new Set([TaskState.FAILED, TaskState.CANCELED, TaskState.DEAD]);

export function formatTime(timestamp: Timestamp | undefined): string {
  return timestamp === undefined ? "—" : timestampDate(timestamp).toLocaleString();
}

export function durationMillis(duration: Duration | undefined): number {
  return duration === undefined ? 0 : Number(duration.seconds) * 1000 + duration.nanos / 1e6;
}

export function formatDuration(duration: Duration | undefined): string {
  if (duration === undefined) return "—";
  const ms = durationMillis(duration);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function formatUsd(value: number): string {
  return `$${value.toFixed(value !== 0 && value < 0.01 ? 4 : 2)}`;
}

export function formatCount(value: bigint | number): string {
  return Number(value).toLocaleString();
}
