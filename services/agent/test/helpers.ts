import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { expect, vi } from "vitest";
import { type AgentProfile, AgentProfileSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import type { OutputStream } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { AgentEvent, RunnerSettings } from "../src/runners/runner.js";
import { BwrapSandbox, type BwrapSandboxOptions } from "../src/sandbox/sandbox.js";

export function fixture(name: string): string {
  return fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
}

/** The sandbox runs get by default, with the fixtures visible read-only (as AGENT_SANDBOX_READONLY_PATHS would). */
export function testSandbox(overrides: Partial<BwrapSandboxOptions> = {}): BwrapSandbox {
  return new BwrapSandbox({
    bwrap: "/usr/bin/bwrap",
    readonlyPaths: [fixture("")],
    runnerBinaries: [],
    path: process.env.PATH ?? "",
    ...overrides,
  });
}

export function settings(overrides: Partial<RunnerSettings> = {}): RunnerSettings {
  return {
    agentCommand: undefined,
    claudeBin: fixture("fake-claude.mjs"),
    killGraceMs: 500,
    outputChunkBytes: 4096,
    sandbox: testSandbox(),
    ...overrides,
  };
}

export function profile(
  init: MessageInitShape<typeof AgentProfileSchema> & { maxRunTimeMs?: number } = {},
): AgentProfile {
  const { maxRunTimeMs, ...rest } = init;
  return create(AgentProfileSchema, {
    ...rest,
    ...(maxRunTimeMs !== undefined && { maxRunTime: durationFromMs(maxRunTimeMs) }),
  });
}

export async function scratchDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `hookmesh-agent-test-${label}-`));
}

/** Collects a run's events, with views of each kind. */
export function eventLog() {
  const events: AgentEvent[] = [];
  const output = (stream?: OutputStream) =>
    events.flatMap((e) =>
      e.case === "output" && (stream === undefined || e.value.stream === stream) ? [e.value] : [],
    );
  return {
    events,
    onEvent: (event: AgentEvent) => void events.push(event),
    output,
    text: (stream: OutputStream) => output(stream).map((o) => o.text),
    toolCalls: () =>
      events.flatMap((e) => (e.case === "toolCall" ? [{ name: e.value.name, detail: e.value.detail }] : [])),
    usage: () => events.flatMap((e) => (e.case === "usage" ? [e.value] : [])),
  };
}

/** Live descendants of a process (a sandbox's bwrap and everything in the sandbox), from /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (state === "Z") continue;
    children.set(Number(ppid), [...(children.get(Number(ppid)) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  const visit = (parent: number) => {
    for (const child of children.get(parent) ?? []) {
      found.push(child);
      visit(child);
    }
  };
  visit(pid);
  return found;
}

/** Those of `pids` still alive (zombies are dead, only not yet reaped). */
export function alive(pids: readonly number[]): number[] {
  return pids.filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
    } catch {
      return false;
    }
  });
}

/** Resolves once `check` holds; fails after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  await vi.waitFor(() => expect(check()).toBe(true), { timeout: timeoutMs, interval: 20 });
}
