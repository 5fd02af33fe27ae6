import type { ReactNode } from "react";
import { TaskState } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { stateLabel } from "./api.js";

/** An error from the API, announced to screen readers. */
export function ErrorNotice({ error }: { error: string | undefined }) {
  if (error === undefined) return null;
  return (
    <p role="alert" className="error">
      {error}
    </p>
  );
}

/** A message saying an action was done, announced politely. */
export function StatusNotice({ message }: { message: string | undefined }) {
  return (
    <p role="status" className="notice">
      {message ?? ""}
    </p>
  );
}

export function Loading({ loading }: { loading: boolean }) {
  return loading ? <p aria-live="polite">Loading…</p> : null;
}

const STATE_CLASS: Partial<Record<TaskState, string>> = {
  [TaskState.SUCCEEDED]: "good",
  [TaskState.RUNNING]: "busy",
  [TaskState.QUEUED]: "busy",
  [TaskState.FAILED]: "bad",
  [TaskState.DEAD]: "bad",
  [TaskState.CANCELED]: "muted",
  [TaskState.IGNORED]: "muted",
};

export function StateBadge({ state }: { state: TaskState }) {
  return <span className={`badge ${STATE_CLASS[state] ?? ""}`}>{stateLabel(state)}</span>;
}

export function PageHeader({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <header className="page-header">
      <h1>{title}</h1>
      {children}
    </header>
  );
}

/** Previous/next buttons over page tokens; `tokens` is the stack of the pages before this one. */
export function Pager({
  label,
  hasPrevious,
  nextToken,
  onPrevious,
  onNext,
}: {
  label: string;
  hasPrevious: boolean;
  nextToken: string | undefined;
  onPrevious: () => void;
  onNext: (token: string) => void;
}) {
  return (
    <nav aria-label={label} className="pager">
      <button type="button" disabled={!hasPrevious} onClick={onPrevious}>
        Previous page
      </button>
      <button type="button" disabled={!nextToken} onClick={() => nextToken && onNext(nextToken)}>
        Next page
      </button>
    </nav>
  );
}

/** A column heading: its label, or `{ numeric }` for a column of numbers (aligned right). */
export type Column = string | { numeric: string };

/**
 * A table's header row: a `th scope="col"` per column, after an empty corner cell above row
 * headings (`corner`), and before a visually hidden "Actions" heading over a column of buttons
 * (`actions`).
 */
export function ColumnHeads({
  columns,
  corner = false,
  actions = false,
}: {
  columns: readonly Column[];
  corner?: boolean;
  actions?: boolean;
}) {
  return (
    <thead>
      <tr>
        {corner && <td />}
        {columns.map((column) =>
          typeof column === "string" ? (
            <th key={column} scope="col">
              {column}
            </th>
          ) : (
            <th key={column.numeric} scope="col" className="number">
              {column.numeric}
            </th>
          ),
        )}
        {actions && (
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        )}
      </tr>
    </thead>
  );
}
