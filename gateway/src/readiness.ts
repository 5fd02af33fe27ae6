import type { Client } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { TaskService } from "../../gen/hookmesh/tasks/v1/task_service_pb.js";

/** How long `/readyz` waits for the tasks service's answer. */
const CHECK_TIMEOUT_MS = 1_000;

/**
 * The gateway can make a delivery durable only when the tasks service can take it, so it is
 * ready exactly when tasks says its TaskService is SERVING.
 */
export function tasksReadiness(tasksHealth: Client<typeof Health>) {
  return async (signal: AbortSignal): Promise<boolean> => {
    try {
      const res = await tasksHealth.check({ service: TaskService.typeName }, { signal, timeoutMs: CHECK_TIMEOUT_MS });
      return res.status === ServingStatus.SERVING;
    } catch {
      return false;
    }
  };
}
