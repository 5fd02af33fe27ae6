import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { AgentService, RunSchema } from "../../../gen/hookmesh/agent/v1/agent_service_pb.js";
import type { WorkerPool } from "./pool.js";

export function routes(pool: WorkerPool, drainGraceMs: number) {
  return (router: ConnectRouter) =>
    router.service(AgentService, {
      listRuns() {
        const { runs, ...status } = pool.status();
        return {
          ...status,
          runs: runs.map((run) =>
            create(RunSchema, { ...run, startTime: timestampFromMs(run.startTime), pid: run.pid ?? 0 }),
          ),
        };
      },
      drain() {
        const runsInProgress = pool.status().runs.length;
        // Answers at once; the drain goes on for up to the grace, as on SIGTERM.
        void pool.drain(drainGraceMs);
        return { runsInProgress };
      },
    });
}
