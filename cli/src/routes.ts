import { readFileSync } from "node:fs";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { parse as parseYaml } from "yaml";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Route, RouteSchema } from "../../gen/hookmesh/tasks/v1/route_pb.js";
import {
  GetRouteResponseSchema,
  ListRoutesResponseSchema,
  RouteService,
  UpsertRouteResponseSchema,
} from "../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { type Print, required } from "./args.js";
import { type CommandSpec, getSubcommand, JSON_FLAG, jsonOf, parseCommand, runGroup } from "./command.js";

const LIST = {
  usage: "routes list [--json]",
  summary: "The routing rules: id, priority, provider and trigger.",
  options: JSON_FLAG,
  flags: { json: "print the response as protobuf JSON (ListRoutesResponse)" },
  example: "hookmesh routes list",
} satisfies CommandSpec;

const GET = {
  usage: "routes get ID [--json]",
  summary: "One routing rule, as protobuf JSON (the shape `routes upsert -f` takes).",
  options: JSON_FLAG,
  flags: { json: "print the whole response (GetRouteResponse) instead of the rule alone" },
  example: "hookmesh routes get github-mention > rule.json",
} satisfies CommandSpec;

const UPSERT = {
  usage: "routes upsert -f FILE [--json]",
  summary:
    "Creates or replaces the rules in FILE: YAML or JSON, one rule or a list.\n" +
    "Rules take the shape `routes get` prints and are stored in order; the first rule the service\n" +
    "refuses stops the command with the field at fault, e.g. routes[1].priority, and exit 1.",
  options: { file: { type: "string", short: "f" }, ...JSON_FLAG },
  flags: {
    file: "the YAML or JSON file of rules (- for stdin)",
    json: "print the UpsertRouteResponse as protobuf JSON (a list of them for a list of rules)",
  },
  example: "hookmesh routes upsert -f rules.yaml",
} satisfies CommandSpec;

const DELETE = {
  usage: "routes delete ID",
  summary: "Deletes a routing rule.",
  options: {},
  flags: {},
  example: "hookmesh routes delete slack-mention",
} satisfies CommandSpec;

/** `hookmesh routes list|get|upsert|delete`, against the tasks service's RouteService. */
export async function routesCommand(args: string[], tasks: Transport, print: Print): Promise<void> {
  const client = createClient(RouteService, tasks);
  return runGroup(
    "routes",
    "The tasks service's routing rules, which decide what becomes a task.",
    {
      list: {
        spec: LIST,
        async run(rest) {
          const parsed = parseCommand(LIST, rest, print);
          if (!parsed) return;
          const res = await client.listRoutes({});
          if (parsed.values.json) return print(jsonOf(ListRoutesResponseSchema, res));
          for (const route of res.routes) print(formatRoute(route));
        },
      },
      get: getSubcommand(
        {
          spec: GET,
          what: "route id",
          fetch: (id) => client.getRoute({ id }),
          response: GetRouteResponseSchema,
          item: RouteSchema,
          itemOf: (res) => res.route!,
        },
        print,
      ),
      upsert: {
        spec: UPSERT,
        async run(rest) {
          const parsed = parseCommand(UPSERT, rest, print);
          if (!parsed) return;
          const file = required(parsed.values.file, "-f FILE");
          const { routes, list } = parseRoutes(file, readFileSync(file === "-" ? 0 : file, "utf8"));
          const stored = [];
          for (const [i, route] of routes.entries()) {
            try {
              stored.push(await client.upsertRoute({ route }));
            } catch (err) {
              const error = ConnectError.from(err);
              // The service names the field as `route.x`; the file's reader needs the entry too.
              const field = list ? error.rawMessage.replace(/^route\b/, `routes[${i}]`) : error.rawMessage;
              const written = stored.length ? ` (${stored.map((s) => s.route!.id).join(", ")} stored)` : "";
              throw new ConnectError(`${file}: ${field}${written}`, error.code);
            }
          }
          if (!parsed.values.json) {
            for (const res of stored) print(`upserted ${res.route!.id}`);
          } else if (list) {
            print(
              JSON.stringify(
                stored.map((res) => toJson(UpsertRouteResponseSchema, res)),
                null,
                2,
              ),
            );
          } else {
            print(jsonOf(UpsertRouteResponseSchema, stored[0]!));
          }
        },
      },
      delete: {
        spec: DELETE,
        async run(rest) {
          const parsed = parseCommand(DELETE, rest, print);
          if (!parsed) return;
          const id = required(parsed.positionals[0], "route id");
          await client.deleteRoute({ id });
          print(`deleted ${id}`);
        },
      },
    },
    args,
    print,
  );
}

/** The rules of a YAML or JSON document (JSON is YAML): one rule, or a list of them. */
function parseRoutes(file: string, text: string): { routes: Route[]; list: boolean } {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    throw new Error(`${file}: not YAML or JSON: ${(err as Error).message}`);
  }
  const entries: unknown[] = Array.isArray(document) ? document : [document];
  const list = Array.isArray(document);
  const routes = entries.map((entry, i) => {
    const where = list ? `routes[${i}]` : "route";
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new Error(`${file}: ${where}: must be a mapping of route fields`);
    }
    try {
      return fromJson(RouteSchema, entry as JsonValue);
    } catch (err) {
      throw new Error(`${file}: ${where}: ${(err as Error).message}`);
    }
  });
  return { routes, list };
}

function formatRoute(route: Route): string {
  const trigger = route.trigger?.kind.case ?? "none";
  return `${route.id.padEnd(24)} ${String(route.priority).padStart(4)}  ${Provider[route.provider].toLowerCase().padEnd(7)} ${trigger}${route.disabled ? "  (disabled)" : ""}`;
}
