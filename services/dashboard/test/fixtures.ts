import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Provider } from "../../../gen/hookmesh/events/v1/event_pb.js";
import {
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskSchema,
  TaskStage,
  TaskState,
} from "../../../gen/hookmesh/tasks/v1/task_pb.js";

export const T0 = Date.UTC(2026, 10, 20, 10, 0, 0);

export interface TaskFixture {
  id: string;
  state?: TaskState;
  provider?: Provider;
  createMs?: number;
  updateMs?: number;
  routeId?: string;
  subjectKey?: string;
  title?: string;
  prompt?: string;
  text?: string;
  answer?: string;
  costUsd?: number;
  /** When it was first leased. */
  leasedMs?: number;
  repository?: string;
  traceId?: string;
}

export function task(f: TaskFixture): Task {
  const createMs = f.createMs ?? T0;
  const [owner = "", repo = ""] = (f.repository ?? "").split("/");
  return create(TaskSchema, {
    id: f.id,
    state: f.state ?? TaskState.QUEUED,
    createTime: timestampFromMs(createMs),
    updateTime: timestampFromMs(f.updateMs ?? createMs),
    routeId: f.routeId ?? "",
    prompt: f.prompt ?? "",
    event: {
      provider: f.provider ?? Provider.GITHUB,
      deliveryId: `d-${f.id}`,
      text: f.text ?? "",
      rawBody: new TextEncoder().encode("{}"),
      subject: { key: f.subjectKey ?? "", title: f.title ?? "" },
      ...(f.traceId && { traceContext: { traceparent: `00-${f.traceId}-00f067aa0ba902b7-01` } }),
    },
    transitions:
      f.leasedMs === undefined
        ? []
        : [{ state: TaskState.RUNNING, time: timestampFromMs(f.leasedMs), attempt: 1, reason: "leased" }],
    ...(f.repository && { repository: { owner, repo } }),
    ...((f.answer !== undefined || f.costUsd !== undefined) && {
      result: {
        answer: f.answer ?? "",
        costUsd: f.costUsd ?? 0,
        inputTokens: 100n,
        outputTokens: 10n,
        duration: durationFromMs(1000),
      },
    }),
  });
}

export function stageEvent(id: string, stage: TaskStage, timeMs: number, attempt = 0): TaskEvent {
  return create(TaskEventSchema, {
    id,
    time: timestampFromMs(timeMs),
    attempt,
    kind: { case: "stage", value: { stage, detail: TaskStage[stage] } },
  });
}

export function outputEvent(id: string, text: string, timeMs: number, attempt = 1): TaskEvent {
  return create(TaskEventSchema, {
    id,
    time: timestampFromMs(timeMs),
    attempt,
    kind: { case: "output", value: { stream: 3, text } },
  });
}
