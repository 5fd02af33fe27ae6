import type { Client } from "@connectrpc/connect";
import { Provider } from "../gen/hookmesh/events/v1/event_pb.js";
import type { Task } from "../gen/hookmesh/tasks/v1/task_pb.js";
import type { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";

/** Counting what deliveries became: every GitHub task, and how many tasks each delivery id is. */

/** Every GitHub task, through ListTasks' pages. */
export async function listAllTasks(client: Client<typeof TaskService>, pageSize = 500): Promise<Task[]> {
  const all: Task[] = [];
  for (let pageToken = ""; ; ) {
    const page = await client.listTasks({ pageSize, pageToken, provider: Provider.GITHUB });
    all.push(...page.tasks);
    if (!page.nextPageToken) return all;
    pageToken = page.nextPageToken;
  }
}

/** How many tasks each delivery id became. */
export function tasksPerDelivery(tasks: Task[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const task of tasks) {
    const id = task.event!.deliveryId;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}
