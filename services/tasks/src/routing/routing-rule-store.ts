import { clone, type DescMessage, fromBinary, fromJson, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type RedisClient, runScript } from "@hookmesh/kit";
import { parse as parseYaml } from "yaml";
import { type Route, RouteSchema } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { storeCall } from "../errors.js";
import { defaultRoutes } from "./defaults.js";
import { compareRoutes } from "./match.js";
import { InvalidRouteError, validateRoute } from "./validate.js";

export class RouteNotFoundError extends Error {
  override name = "RouteNotFoundError";
  constructor(readonly id: string) {
    super(`route ${id} not found`);
  }
}

export interface RoutingRuleStoreOptions {
  /** Every key this store touches starts with it; no other service uses it. */
  keyPrefix: string;
  /** The clock, injectable for tests. */
  now?: () => Date;
}

/**
 * Writes the defaults unless they were written before, in one step, so that a crash cannot
 * leave the marker without the rules. HSETNX keeps a rule an operator stored under the same id.
 */
const SEED_DEFAULTS_SCRIPT = `
if not redis.call('SET', KEYS[2], '1', 'NX') then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('INCR', KEYS[3])
return 1
`;

type JsonObject = { [key: string]: JsonValue };

/**
 * Routing rules in Redis: one hash, `routes`, from rule id to the rule as protobuf binary, and
 * `routes:version`, counted up with every write in the same transaction. Every event is routed
 * by the rules as they are now, but the rules are decoded only when the version moved: a
 * submitted batch costs one small read, not every rule decoded again.
 */
export class RoutingRuleStore {
  private readonly routesKey: string;
  private readonly seededKey: string;
  private readonly versionKey: string;
  private readonly now: () => Date;
  private cached: { version: string | null; routes: Route[] } | undefined;

  constructor(
    private readonly redis: RedisClient,
    options: RoutingRuleStoreOptions,
  ) {
    this.routesKey = `${options.keyPrefix}routes`;
    this.seededKey = `${options.keyPrefix}routes:defaults-seeded`;
    this.versionKey = `${options.keyPrefix}routes:version`;
    this.now = options.now ?? (() => new Date());
  }

  /** Every rule, highest priority first, then by id. Shared with other callers: not to be changed. */
  async list(): Promise<Route[]> {
    const version = await storeCall(() => this.redis.get(this.versionKey));
    if (this.cached && version !== null && this.cached.version === version) return this.cached.routes;
    // The rules and their version read together, so that a write in between cannot pair old
    // rules with the new version.
    const replies = await storeCall(() => this.redis.multi().get(this.versionKey).hgetallBuffer(this.routesKey).exec());
    const [[versionError, current], [routesError, stored]] = replies as [
      [Error | null, string | null],
      [Error | null, Record<string, Buffer>],
    ];
    if (versionError ?? routesError) throw versionError ?? routesError;
    const routes = Object.values(stored)
      .map((bytes) => fromBinary(RouteSchema, bytes))
      .sort(compareRoutes);
    this.cached = { version: current, routes };
    return routes;
  }

  async get(id: string): Promise<Route> {
    const bytes = await storeCall(() => this.redis.hgetBuffer(this.routesKey, id));
    if (bytes === null) throw new RouteNotFoundError(id);
    return fromBinary(RouteSchema, bytes);
  }

  /** Creates or replaces the rule with `route.id`; returns it as stored. */
  async upsert(route: Route | undefined): Promise<Route> {
    const [stored] = await this.write([this.stamp(validateRoute(route))]);
    return stored!;
  }

  async delete(id: string): Promise<void> {
    const replies = await storeCall(() => this.redis.multi().hdel(this.routesKey, id).incr(this.versionKey).exec());
    if (replies?.[0]?.[1] === 0) throw new RouteNotFoundError(id);
  }

  /**
   * Stores the built-in rules the first time only, so that an operator's later edit or
   * deletion of one survives restarts. Returns whether they were written now.
   */
  async seedDefaults(): Promise<boolean> {
    const args = defaultRoutes().flatMap((route) => [route.id, Buffer.from(toBinary(RouteSchema, this.stamp(route)))]);
    const written = await storeCall(() =>
      runScript(this.redis, SEED_DEFAULTS_SCRIPT, [this.routesKey, this.seededKey, this.versionKey], args),
    );
    return written === 1;
  }

  /**
   * Upserts the rules of a YAML file: a list of routes in the proto JSON shape. Every entry
   * is checked before any is written; errors name the entry, e.g. `routes[2].trigger`.
   */
  async seedFromYaml(text: string): Promise<Route[]> {
    let entries: unknown;
    try {
      entries = parseYaml(text) ?? [];
    } catch (err) {
      throw new InvalidRouteError("routes", `is not valid YAML: ${(err as Error).message}`);
    }
    if (!Array.isArray(entries)) throw new InvalidRouteError("routes", "must be a list of routes");
    const firstIndexOf = new Map<string, number>();
    const routes = entries.map((entry, i) => {
      const path = `routes[${i}]`;
      const route = validateRoute(decodeRoute(entry, path), path);
      const first = firstIndexOf.get(route.id);
      if (first !== undefined) throw new InvalidRouteError(`${path}.id`, `repeats routes[${first}].id "${route.id}"`);
      firstIndexOf.set(route.id, i);
      return this.stamp(route);
    });
    return this.write(routes);
  }

  private async write(routes: Route[]): Promise<Route[]> {
    if (routes.length === 0) return routes;
    const fields = routes.flatMap((route) => [route.id, Buffer.from(toBinary(RouteSchema, route))]);
    await storeCall(() =>
      this.redis
        .multi()
        .hset(this.routesKey, ...fields)
        .incr(this.versionKey)
        .exec(),
    );
    return routes;
  }

  private stamp(route: Route): Route {
    const stamped = clone(RouteSchema, route);
    stamped.updateTime = timestampFromDate(this.now());
    return stamped;
  }
}

function decodeRoute(entry: unknown, path: string): Route {
  if (!isJsonObject(entry)) throw new InvalidRouteError(path, "must be a mapping of route fields");
  try {
    return fromJson(RouteSchema, entry);
  } catch (err) {
    const [field, problem] = undecodableField(RouteSchema, entry) ?? ["", (err as Error).message];
    throw new InvalidRouteError(field ? `${path}.${field}` : path, problem);
  }
}

/**
 * The field of `json` that `schema` cannot decode, found by decoding one field at a time,
 * because protobuf-es's errors do not always say which field (an enum's never does).
 */
function undecodableField(schema: DescMessage, json: JsonObject): [field: string, problem: string] | undefined {
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((f) => f.name === key || f.jsonName === key);
    if (!field) return [key, `is not a field of ${schema.typeName}`];
    try {
      fromJson(schema, { [key]: value });
    } catch (err) {
      const inner =
        field.fieldKind === "message" && isJsonObject(value) ? undecodableField(field.message, value) : undefined;
      if (inner) return [`${field.name}.${inner[0]}`, inner[1]];
      if (field.fieldKind === "enum") {
        const names = field.enum.values.filter((v) => v.number !== 0).map((v) => v.name);
        return [field.name, `must be one of ${names.join(", ")}`];
      }
      return [field.name, (err as Error).message];
    }
  }
  return undefined;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
