import { create } from "@bufbuild/protobuf";
import {
  OutputEventSchema,
  type OutputStream,
  ToolCallEventSchema,
  UsageEventSchema,
} from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { AgentEvent } from "./runner.js";

/** `text` cut to at most `maxBytes` of UTF-8, never in the middle of a character. */
export function truncateUtf8(text: string, maxBytes: number): { text: string; truncated: boolean } {
  const bytes = Buffer.from(text);
  if (bytes.length <= maxBytes) return { text, truncated: false };
  // A character cut in two decodes to U+FFFD at the end; dropping it leaves whole characters.
  return {
    text: bytes
      .subarray(0, maxBytes)
      .toString()
      .replace(/\uFFFD+$/, ""),
    truncated: true,
  };
}

export function outputEvent(stream: OutputStream, text: string, maxBytes: number, cut = false): AgentEvent {
  const chunk = truncateUtf8(text, maxBytes);
  return {
    case: "output",
    value: create(OutputEventSchema, { stream, text: chunk.text, truncated: chunk.truncated || cut }),
  };
}

export function toolCallEvent(name: string, detail: string, maxBytes: number): AgentEvent {
  return {
    case: "toolCall",
    value: create(ToolCallEventSchema, { name, detail: truncateUtf8(detail, maxBytes).text }),
  };
}

export interface Usage {
  costUsd: number;
  inputTokens: bigint;
  outputTokens: bigint;
}

export function usageEvent(usage: Usage): AgentEvent {
  return { case: "usage", value: create(UsageEventSchema, usage) };
}
