import { EventEmitter } from "node:events";

/**
 * Tells the watches of a task that the read model has new events for it. The projector
 * publishes after each commit; with PostgreSQL, other replicas' projections arrive through
 * LISTEN on `channel` and are published here too. A notice only says "look again": a watch
 * reads the events themselves from the database, so a repeated notice costs one query.
 */
export class Notifier {
  readonly channel = "hookmesh_dashboard_task_events";
  private readonly emitter = new EventEmitter();

  constructor() {
    // One listener per open watch; there is no leak to warn about.
    this.emitter.setMaxListeners(0);
  }

  publish(taskId: string): void {
    this.emitter.emit(taskId);
  }

  /** Calls `onChange` whenever the task may have new events, until the returned function is called. */
  subscribe(taskId: string, onChange: () => void): () => void {
    this.emitter.on(taskId, onChange);
    return () => this.emitter.off(taskId, onChange);
  }
}
