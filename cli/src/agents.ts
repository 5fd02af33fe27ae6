import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import {
  AgentService,
  DrainResponseSchema,
  ListRunsResponseSchema,
} from "../../gen/hookmesh/agent/v1/agent_service_pb.js";
import type { Print } from "./args.js";
import { type CommandSpec, JSON_FLAG, jsonOf, parseCommand, runGroup } from "./command.js";

const LIST = {
  usage: "agents list [--json]",
  summary: "The agent worker at AGENT_URL: its id, slots, whether it drains, and the runs in progress.",
  options: JSON_FLAG,
  flags: { json: "print the response as protobuf JSON (ListRunsResponse)" },
  example: "AGENT_URL=https://10.0.0.7:50052 hookmesh agents list",
} satisfies CommandSpec;

const DRAIN = {
  usage: "agents drain [--json]",
  summary:
    "Stops the worker at AGENT_URL leasing new tasks.\n" +
    "Its runs finish within the grace period; draining twice is harmless.",
  options: JSON_FLAG,
  flags: { json: "print the response as protobuf JSON (DrainResponse)" },
  example: "hookmesh agents drain",
} satisfies CommandSpec;

/** `hookmesh agents list|drain`, against one agent worker's AgentService. */
export async function agentsCommand(args: string[], agent: Transport, print: Print): Promise<void> {
  const client = createClient(AgentService, agent);
  return runGroup(
    "agents",
    "An agent worker (AGENT_URL, default port 50052) and the agent runs in it.",
    {
      list: {
        spec: LIST,
        async run(rest) {
          const parsed = parseCommand(LIST, rest, print);
          if (!parsed) return;
          const res = await client.listRuns({});
          if (parsed.values.json) return print(jsonOf(ListRunsResponseSchema, res));
          print(
            `worker ${res.workerId}  ${res.runs.length}/${res.concurrency} slots busy${res.draining ? "  DRAINING" : ""}`,
          );
          for (const run of res.runs) {
            const started = run.startTime ? timestampDate(run.startTime).toISOString() : "";
            print(
              `${run.taskId}  #${run.attempt}  ${run.runner.padEnd(8)} pid ${run.pid}  since ${started}  $${run.costUsd.toFixed(4)}`,
            );
          }
        },
      },
      drain: {
        spec: DRAIN,
        async run(rest) {
          const parsed = parseCommand(DRAIN, rest, print);
          if (!parsed) return;
          const res = await client.drain({});
          if (parsed.values.json) return print(jsonOf(DrainResponseSchema, res));
          print(`draining; ${res.runsInProgress} runs in progress`);
        },
      },
    },
    args,
    print,
  );
}
