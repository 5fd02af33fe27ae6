/**
 * The keys more than one store of the service names: the task store's updates append to a
 * timeline and the change log in the same script, and the timeline's appends read the task.
 */

/** A task's key under the service's key prefix. */
export function taskKey(keyPrefix: string, taskId: string): string {
  return `${keyPrefix}task:${taskId}`;
}

/** The stream of a task's timeline (kept by Timeline, expiring with the task); also its watchers' channel. */
export function timelineKey(keyPrefix: string, taskId: string): string {
  return `${keyPrefix}events:${taskId}`;
}

/** The stream of every task's changes (written with the timelines, read by WatchChanges); also its watchers' channel. */
export function changeLogKey(keyPrefix: string): string {
  return `${keyPrefix}changes`;
}
