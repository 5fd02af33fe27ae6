import { clone, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type RedisClient, runScript } from "@hookmesh/kit";
import { type CustomRoute, CustomRouteSchema } from "../../../gen/hookmesh/gateway/v1/custom_route_pb.js";
import { storeCall } from "../store-call.js";
import { CustomRouteConflictError, CustomRouteNotFoundError } from "./errors.js";
import { CUSTOM_ROUTE_NAME, InvalidCustomRouteError, validateCustomRoute } from "./validate.js";

export interface CustomRouteStoreOptions {
  /** Every key this store touches starts with it: the gateway's own prefix. */
  keyPrefix: string;
  /** The clock, injectable for tests. */
  now?: () => Date;
}

/**
 * Writes the route only if the stored value is still the one its secret was copied from, so
 * that an upsert keeping the secret can neither resurrect a route deleted meanwhile (which
 * would then have no secret) nor undo a concurrent secret rotation.
 */
const COMPARE_AND_SET_SCRIPT = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`;
/** Each round lets at least one of the racing writers through; more racers than this is not an operator. */
const MAX_UPSERT_ATTEMPTS = 10;

/**
 * Custom webhooks in Redis (proto: CustomRoute): one hash, `custom-routes`, from route name to the route as
 * protobuf binary, secret included. Only `get` returns the secret (for verifying requests);
 * everything the API returns has it stripped (`secret` empty, `has_secret` true).
 */
export class CustomRouteStore {
  private readonly key: string;
  private readonly now: () => Date;

  constructor(
    private readonly redis: RedisClient,
    options: CustomRouteStoreOptions,
  ) {
    this.key = `${options.keyPrefix}custom-routes`;
    this.now = options.now ?? (() => new Date());
  }

  /** Every route, by name, secrets stripped. */
  async list(): Promise<CustomRoute[]> {
    const stored = await storeCall(() => this.redis.hgetallBuffer(this.key));
    return Object.values(stored)
      .map((bytes) => stripSecret(fromBinary(CustomRouteSchema, bytes)))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * The route as stored, WITH its secret: for verifying a request to it, never for an API
   * answer or a log line. A name no route could have is not found without asking Redis.
   */
  async get(name: string): Promise<CustomRoute> {
    if (!CUSTOM_ROUTE_NAME.test(name)) throw new CustomRouteNotFoundError(name);
    const bytes = await storeCall(() => this.redis.hgetBuffer(this.key, name));
    if (bytes === null) throw new CustomRouteNotFoundError(name);
    return fromBinary(CustomRouteSchema, bytes);
  }

  /**
   * Creates or replaces the route with `route.name`; an empty `secret` keeps the stored one
   * (and is refused for a new route). Returns the route as stored, secret stripped.
   */
  async upsert(route: CustomRoute | undefined): Promise<CustomRoute> {
    const stamped = clone(CustomRouteSchema, validateCustomRoute(route));
    stamped.hasSecret = true;
    stamped.updateTime = timestampFromDate(this.now());
    if (stamped.secret !== "") {
      const bytes = Buffer.from(toBinary(CustomRouteSchema, stamped));
      await storeCall(() => this.redis.hset(this.key, stamped.name, bytes));
      return stripSecret(stamped);
    }
    for (let attempt = 0; attempt < MAX_UPSERT_ATTEMPTS; attempt++) {
      const current = await storeCall(() => this.redis.hgetBuffer(this.key, stamped.name));
      if (current === null) throw new InvalidCustomRouteError("route.secret", "is required for a new route");
      const toStore = clone(CustomRouteSchema, stamped);
      toStore.secret = fromBinary(CustomRouteSchema, current).secret;
      const bytes = Buffer.from(toBinary(CustomRouteSchema, toStore));
      const written = await storeCall(() =>
        runScript(this.redis, COMPARE_AND_SET_SCRIPT, [this.key], [stamped.name, current, bytes]),
      );
      if (written === 1) return stripSecret(toStore);
    }
    throw new CustomRouteConflictError(stamped.name);
  }

  async delete(name: string): Promise<void> {
    const removed = await storeCall(() => this.redis.hdel(this.key, name));
    if (removed === 0) throw new CustomRouteNotFoundError(name);
  }
}

/** The route as the API shows it: `secret` empty, `has_secret` saying whether one is stored. */
export function stripSecret(route: CustomRoute): CustomRoute {
  const stripped = clone(CustomRouteSchema, route);
  stripped.hasSecret = route.secret !== "" || route.hasSecret;
  stripped.secret = "";
  return stripped;
}
