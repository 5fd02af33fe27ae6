import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { type FormEvent, useState } from "react";
import { Link } from "react-router";
import { type Route, RouteSchema } from "../../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { dashboard, formatTime, providerLabel } from "../api.js";
import { ColumnHeads, ErrorNotice, Loading, PageHeader, StatusNotice } from "../components.js";
import { useAction, useLoad } from "../hooks.js";

/** The JSON the editor shows: protobuf JSON, the shape `hookmesh routes get` prints and `routes upsert -f` reads. */
const toJson = (route: Route) => toJsonString(RouteSchema, route, { prettySpaces: 2 });

/** A starting point for a new rule: a GitHub mention, the shape of the README's examples. */
const NEW_ROUTE = `{
  "id": "",
  "description": "",
  "provider": "PROVIDER_GITHUB",
  "eventTypes": ["issue_comment"],
  "actions": ["created"],
  "trigger": { "mention": {} },
  "profile": {},
  "priority": 100
}`;

function triggerOf(route: Route): string {
  const { kind } = route.trigger ?? {};
  switch (kind?.case) {
    case "mention":
      return `mention ${kind.value.mention}`;
    case "label":
      return `label ${kind.value.label}`;
    case "slashCommand":
      return `command ${kind.value.command}`;
    case "issueCreated":
      return "issue created";
    default:
      return "any";
  }
}

/** The JSON editor of one rule; `original` is undefined for a new one. */
function RouteEditor({
  original,
  onSaved,
  onClose,
}: {
  original: Route | undefined;
  onSaved: (route: Route) => void;
  onClose: () => void;
}) {
  const [text, setText] = useState(original ? toJson(original) : NEW_ROUTE);
  const action = useAction();

  function save(event: FormEvent) {
    event.preventDefault();
    void action.run(async () => {
      let route: Route;
      try {
        route = fromJsonString(RouteSchema, text);
      } catch (reason) {
        throw new Error(`The JSON is not a routing rule: ${reason instanceof Error ? reason.message : reason}`);
      }
      const saved = await dashboard.upsertRoute({ route });
      onSaved(saved.route ?? route);
    });
  }

  const title = original ? `Edit route ${original.id}` : "New route";
  return (
    <form className="card editor" aria-label={title} onSubmit={save}>
      <h2>{title}</h2>
      <label htmlFor="route-json">Route (JSON, hookmesh.tasks.v1.Route)</label>
      <textarea
        id="route-json"
        value={text}
        onChange={(event) => setText(event.target.value)}
        rows={Math.min(30, Math.max(12, text.split("\n").length + 1))}
        spellCheck={false}
      />
      <ErrorNotice error={action.error} />
      <div className="actions">
        <button type="submit" disabled={action.busy}>
          Save route
        </button>
        <button type="button" onClick={onClose}>
          Close editor
        </button>
      </div>
    </form>
  );
}

export function RoutesPage() {
  const { data, error, loading, reload } = useLoad((signal) => dashboard.listRoutes({}, { signal }), []);
  /** The rule being edited: a route, "new", or none. */
  const [editing, setEditing] = useState<Route | "new">();
  const [confirming, setConfirming] = useState<string>();
  const [message, setMessage] = useState<string>();
  const action = useAction();

  const remove = (id: string) =>
    action.run(async () => {
      await dashboard.deleteRoute({ id });
      setConfirming(undefined);
      reload();
    }, `Route ${id} was deleted.`);

  return (
    <>
      <PageHeader title="Routes">
        <button
          type="button"
          onClick={() => {
            setEditing("new");
            setMessage(undefined);
          }}
        >
          New route
        </button>
      </PageHeader>
      {editing !== undefined && (
        <RouteEditor
          key={editing === "new" ? "new" : editing.id}
          original={editing === "new" ? undefined : editing}
          onClose={() => setEditing(undefined)}
          onSaved={(route) => {
            setEditing(undefined);
            setMessage(`Route ${route.id} was saved.`);
            reload();
          }}
        />
      )}
      <ErrorNotice error={error ?? action.error} />
      <StatusNotice message={action.message ?? message} />
      {!data && <Loading loading={loading} />}
      {data && (
        <table aria-label="Routes">
          <ColumnHeads columns={["Route", "Provider", "Events", "Trigger", "Runner", "Priority", "Updated"]} actions />
          <tbody>
            {data.routes.map((route) => (
              <tr key={route.id} className={route.disabled ? "disabled" : undefined}>
                <th scope="row">
                  <Link to={`/tasks?route=${encodeURIComponent(route.id)}`} className="mono">
                    {route.id}
                  </Link>
                  {route.disabled && <span className="badge muted">disabled</span>}
                  {route.description && <span className="subtitle">{route.description}</span>}
                </th>
                <td>{providerLabel(route.provider)}</td>
                <td>
                  {route.eventTypes.join(", ") || "any"}
                  {route.actions.length > 0 && <span className="subtitle">{route.actions.join(", ")}</span>}
                </td>
                <td>{triggerOf(route)}</td>
                <td>{route.profile?.runner || "default"}</td>
                <td>{route.priority}</td>
                <td>{formatTime(route.updateTime)}</td>
                <td>
                  <div className="row-actions">
                    <button
                      type="button"
                      aria-label={`Edit ${route.id}`}
                      onClick={() => {
                        setEditing(route);
                        setMessage(undefined);
                      }}
                    >
                      Edit
                    </button>
                    {confirming === route.id ? (
                      <>
                        <button
                          type="button"
                          className="danger"
                          onClick={() => remove(route.id)}
                          disabled={action.busy}
                        >
                          Confirm delete {route.id}
                        </button>
                        <button type="button" onClick={() => setConfirming(undefined)}>
                          Keep
                        </button>
                      </>
                    ) : (
                      <button type="button" aria-label={`Delete ${route.id}`} onClick={() => setConfirming(route.id)}>
                        Delete
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            ))}
            {data.routes.length === 0 && (
              <tr>
                <td colSpan={8}>No routing rules: every event is ignored. Add one with “New route”.</td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </>
  );
}
