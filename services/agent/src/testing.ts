import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { createLogger } from "@hookmesh/kit";
import type { GitHubService } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { type AgentProfile, AgentProfileSchema } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { AgentRun, type RunReport, systemClock } from "./agent-run.js";
import { createRunners } from "./runners/index.js";
import type { AgentEvent } from "./runners/runner.js";
import { BwrapSandbox } from "./sandbox/sandbox.js";
import { Publisher } from "./workspace/publish.js";
import type { Workspace } from "./workspace/workspace.js";

export type { RunReport } from "./agent-run.js";
export type { AgentEvent } from "./runners/runner.js";
export type { Workspace } from "./workspace/workspace.js";

export interface WorkspaceRunOptions {
  taskId: string;
  /** The `command` runner's command line, run sandboxed in the workspace. */
  command: string;
  workspace: Workspace;
  /** A client of the github service that publishes the changes (as the agent identity). */
  github: Client<typeof GitHubService>;
  profile?: AgentProfile;
  /** Paths the sandbox sees read-only (AGENT_SANDBOX_READONLY_PATHS), e.g. the test's fixtures. */
  readonlyPaths?: string[];
  /** The runs' directory root (the agent's HOME is made in the workspace). */
  workdirRoot: string;
}

/**
 * One run as a worker makes it once a task's workspace is checked out: the `command` runner
 * in the bubblewrap sandbox, then the publish step, through the github service the test
 * started. For cross-service tests of publishing, which reach the worker only through this.
 */
export async function runInWorkspace(
  options: WorkspaceRunOptions,
): Promise<{ report: RunReport; events: AgentEvent[] }> {
  const logger = createLogger({ service: "agent-test", level: "silent" });
  const sandbox = new BwrapSandbox({
    bwrap: "/usr/bin/bwrap",
    readonlyPaths: options.readonlyPaths ?? [],
    runnerBinaries: [],
    path: process.env.PATH ?? "",
  });
  const runners = createRunners({
    agentCommand: options.command,
    claudeBin: "claude",
    killGraceMs: 500,
    outputChunkBytes: 4096,
    sandbox,
  });
  const events: AgentEvent[] = [];
  const run = new AgentRun({
    taskId: options.taskId,
    prompt: "make the change",
    profile: options.profile ?? create(AgentProfileSchema),
    runnerName: "command",
    runner: runners.get("command")!,
    defaultMaxRunTimeMs: 60_000,
    workdirRoot: options.workdirRoot,
    workerEnv: { PATH: process.env.PATH },
    clock: systemClock,
    logger,
    onEvent: (event) => events.push(event),
    workspace: options.workspace,
    publish: {
      publisher: new Publisher({
        github: options.github,
        settings: { author: { name: "hookmesh[bot]", email: "hookmesh[bot]@users.noreply.github.com" } },
        logger,
      }),
      link: `https://hookmesh.example/tasks/${options.taskId}`,
    },
  });
  return { report: await run.run(), events };
}
