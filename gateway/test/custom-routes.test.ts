import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { StoreUnavailableError, serverCallInterceptor } from "@hookmesh/kit";
import { callError, memoryLogger, type TestRedis, testRedis } from "@hookmesh/kit/testing";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type CustomRoute,
  CustomRouteSchema,
  HmacAlgorithm,
  SignedContent,
} from "../../gen/hookmesh/gateway/v1/custom_route_pb.js";
import { CustomRouteService } from "../../gen/hookmesh/gateway/v1/custom_route_service_pb.js";
import { CustomRouteConflictError, CustomRouteNotFoundError } from "../src/custom/errors.js";
import { CustomRouteStore } from "../src/custom/route-store.js";
import { customRouteServiceRoutes } from "../src/custom/routes.js";
import { InvalidCustomRouteError } from "../src/custom/validate.js";
import { mapGatewayError } from "../src/server.js";

/** The plain-object form of a CustomRoute, which spreads field by field. */
type RouteInit = Exclude<MessageInitShape<typeof CustomRouteSchema>, CustomRoute>;

const SECRET = "custom-route-secret-3f9a2c71e5";
const NEW_SECRET = "custom-route-rotated-8b04d6";
const NOW = new Date("2024-05-01T12:00:00Z");

function route(init: RouteInit = {}): CustomRoute {
  return create(CustomRouteSchema, {
    name: "acme",
    signatureHeader: "X-Acme-Signature",
    signaturePrefix: "sha256=",
    algorithm: HmacAlgorithm.SHA256,
    signedContent: SignedContent.BODY,
    deliveryIdHeader: "X-Acme-Delivery",
    eventTypeHeader: "X-Acme-Event",
    secret: SECRET,
    ...init,
  });
}

/** The route as every API answer shows it. */
function stripped(init: RouteInit = {}): CustomRoute {
  return route({ ...init, secret: "", hasSecret: true, updateTime: timestampFromDate(NOW) });
}

/** A store whose Redis connection is gone. */
async function closedRedis(): Promise<Redis> {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  await redis.connect();
  redis.disconnect();
  return redis;
}

describe("CustomRouteStore", () => {
  let db: TestRedis;
  let store: CustomRouteStore;

  beforeEach(async () => {
    db = await testRedis("gateway-custom-routes");
    store = new CustomRouteStore(db.redis, { keyPrefix: db.prefix, now: () => NOW });
  });
  afterEach(() => db.cleanup());

  it("stores a route as protobuf binary in the custom-routes hash, secret included", async () => {
    await store.upsert(route());
    const bytes = await db.redis.hgetBuffer(`${db.prefix}custom-routes`, "acme");
    expect(fromBinary(CustomRouteSchema, bytes!)).toEqual(
      route({ hasSecret: true, updateTime: timestampFromDate(NOW) }),
    );
  });

  it("returns the upserted route stripped of its secret, and get returns it with the secret", async () => {
    expect(await store.upsert(route())).toEqual(stripped());
    const stored = await store.get("acme");
    expect(stored.secret).toBe(SECRET);
    expect(stored.hasSecret).toBe(true);
    expect(stored.updateTime).toEqual(timestampFromDate(NOW));
  });

  it("lists routes by name, secrets stripped", async () => {
    for (const name of ["zeta", "Alpha", "beta", "alpha"]) await store.upsert(route({ name }));
    const routes = await store.list();
    expect(routes.map((r) => r.name)).toEqual(["Alpha", "alpha", "beta", "zeta"]);
    for (const r of routes) expect(r).toMatchObject({ secret: "", hasSecret: true });
    expect(JSON.stringify(routes.map((r) => ({ ...r, updateTime: undefined })))).not.toContain(SECRET);
  });

  it("lists nothing when there are no routes", async () => {
    expect(await store.list()).toEqual([]);
  });

  it("replaces a route by name; an empty secret keeps the stored one", async () => {
    await store.upsert(route());
    const later = new Date(NOW.getTime() + 60_000);
    const laterStore = new CustomRouteStore(db.redis, { keyPrefix: db.prefix, now: () => later });
    const updated = await laterStore.upsert(
      route({ secret: "", signaturePrefix: "", algorithm: HmacAlgorithm.SHA512 }),
    );
    expect(updated).toMatchObject({
      secret: "",
      hasSecret: true,
      signaturePrefix: "",
      algorithm: HmacAlgorithm.SHA512,
    });
    expect(updated.updateTime).toEqual(timestampFromDate(later));
    const stored = await store.get("acme");
    expect(stored).toMatchObject({ secret: SECRET, signaturePrefix: "", algorithm: HmacAlgorithm.SHA512 });
    expect(await store.list()).toHaveLength(1);
  });

  it("replaces the secret when a new one is given", async () => {
    await store.upsert(route());
    await store.upsert(route({ secret: `${NEW_SECRET},${SECRET}` }));
    expect((await store.get("acme")).secret).toBe(`${NEW_SECRET},${SECRET}`);
  });

  it("ignores output-only fields on input", async () => {
    const input = route({ hasSecret: false, updateTime: timestampFromDate(new Date("2000-01-01T00:00:00Z")) });
    expect(await store.upsert(input)).toEqual(stripped());
  });

  it("refuses a new route without a secret, and does not store it", async () => {
    const err = await store.upsert(route({ secret: "" })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidCustomRouteError);
    expect((err as Error).message).toBe("route.secret: is required for a new route");
    expect(await store.list()).toEqual([]);
  });

  it("does not resurrect a deleted route through an upsert that keeps the secret", async () => {
    await store.upsert(route());
    await store.delete("acme");
    await expect(store.upsert(route({ secret: "" }))).rejects.toThrow("route.secret: is required for a new route");
    await expect(store.get("acme")).rejects.toBeInstanceOf(CustomRouteNotFoundError);
  });

  it("keeps the newest secret when upserts that keep it race a rotation", async () => {
    await store.upsert(route());
    await Promise.all([
      ...Array.from({ length: 5 }, (_, i) => store.upsert(route({ secret: "", eventTypeHeader: `X-Event-${i}` }))),
      store.upsert(route({ secret: NEW_SECRET })),
    ]);
    expect((await store.get("acme")).secret).toBe(NEW_SECRET);
  });

  it("deletes a route; getting or deleting it again is not found", async () => {
    await store.upsert(route());
    await store.delete("acme");
    expect(await store.list()).toEqual([]);
    await expect(store.get("acme")).rejects.toThrow("custom route acme not found");
    await expect(store.delete("acme")).rejects.toBeInstanceOf(CustomRouteNotFoundError);
  });

  it("finds no route under a name no route could have", async () => {
    for (const name of ["", "../acme", "a".repeat(65), "acme/x"]) {
      await expect(store.get(name)).rejects.toBeInstanceOf(CustomRouteNotFoundError);
    }
  });

  it("turns a lost Redis connection into an unavailable error", async () => {
    const closed = new CustomRouteStore(await closedRedis(), { keyPrefix: db.prefix });
    for (const call of [
      () => closed.list(),
      () => closed.get("acme"),
      () => closed.upsert(route()),
      () => closed.delete("acme"),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(StoreUnavailableError);
    }
  });

  it("keeps the stored route, secret included, out of the error when Redis refuses a command", async () => {
    await db.redis.set(`${db.prefix}custom-routes`, "not a hash");
    const err = (await store.upsert(route()).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/WRONGTYPE/);
    expect(err).not.toHaveProperty("command");
    expect(JSON.stringify(err, Object.getOwnPropertyNames(err))).not.toContain(SECRET);
  });

  describe("validation", () => {
    const invalid: [string, RouteInit | undefined, string][] = [
      ["a missing route", undefined, "route: is required"],
      ["an empty name", { name: "" }, "route.name: is required"],
      ["a name with a space", { name: "acme hooks" }, "route.name: must match [A-Za-z0-9_-]{1,64}"],
      ["a name with a slash", { name: "acme/hooks" }, "route.name: must match [A-Za-z0-9_-]{1,64}"],
      ["a name of 65 characters", { name: "a".repeat(65) }, "route.name: must match [A-Za-z0-9_-]{1,64}"],
      ["no signature header", { signatureHeader: "" }, "route.signature_header: is required"],
      [
        "a signature header with a space",
        { signatureHeader: "X Sig" },
        "route.signature_header: must be an HTTP header name",
      ],
      [
        "a signature header with a colon",
        { signatureHeader: "X-Sig:" },
        "route.signature_header: must be an HTTP header name",
      ],
      [
        "a prefix with a newline",
        { signaturePrefix: "sha256=\r\n" },
        "route.signature_prefix: must be at most 64 printable ASCII characters",
      ],
      ["no algorithm", { algorithm: HmacAlgorithm.UNSPECIFIED }, "route.algorithm: is required"],
      [
        "an unknown algorithm",
        { algorithm: 9 as HmacAlgorithm },
        "route.algorithm: must be one of HMAC_ALGORITHM_SHA1, HMAC_ALGORITHM_SHA256, HMAC_ALGORITHM_SHA512",
      ],
      ["no signed content", { signedContent: SignedContent.UNSPECIFIED }, "route.signed_content: is required"],
      [
        "a timestamp-signing route without a timestamp header",
        { signedContent: SignedContent.TIMESTAMP_DOT_BODY },
        "route.timestamp_header: is required with SIGNED_CONTENT_TIMESTAMP_DOT_BODY",
      ],
      [
        "a timestamp header on a body-signing route",
        { timestampHeader: "X-Timestamp" },
        "route.timestamp_header: applies only to SIGNED_CONTENT_TIMESTAMP_DOT_BODY",
      ],
      [
        "a bad timestamp header",
        { signedContent: SignedContent.TIMESTAMP_DOT_BODY, timestampHeader: "X Timestamp" },
        "route.timestamp_header: must be an HTTP header name",
      ],
      [
        "a bad delivery id header",
        { deliveryIdHeader: "X-Id:" },
        "route.delivery_id_header: must be an HTTP header name",
      ],
      [
        "a bad event type header",
        { eventTypeHeader: "X-Événement" },
        "route.event_type_header: must be an HTTP header name",
      ],
      ["a negative body limit", { maxBodyBytes: -1 }, "route.max_body_bytes: must be from 0 to 26214400"],
      ["a body limit over 25 MiB", { maxBodyBytes: 26214401 }, "route.max_body_bytes: must be from 0 to 26214400"],
      [
        "an empty secret among several",
        { secret: `${SECRET},,${NEW_SECRET}` },
        "route.secret: must be one or more comma-separated secrets, none of them empty",
      ],
      [
        "a blank secret",
        { secret: "  " },
        "route.secret: must be one or more comma-separated secrets, none of them empty",
      ],
    ];

    it.each(invalid)("refuses %s", async (_, init, message) => {
      const err = await store.upsert(init && route(init)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidCustomRouteError);
      expect((err as Error).message).toBe(message);
      expect(await store.list()).toEqual([]);
    });

    it("accepts the limits and every algorithm and signed content", async () => {
      const valid: RouteInit[] = [
        { name: "a".repeat(64), maxBodyBytes: 26214400 },
        { name: "A_b-9", maxBodyBytes: 0, signaturePrefix: "", deliveryIdHeader: "", eventTypeHeader: "" },
        { name: "sha1", algorithm: HmacAlgorithm.SHA1, signaturePrefix: "sha1=" },
        { name: "sha512", algorithm: HmacAlgorithm.SHA512, signaturePrefix: "v1 " },
        { name: "stripe-like", signedContent: SignedContent.TIMESTAMP_DOT_BODY, timestampHeader: "X-Timestamp" },
      ];
      for (const init of valid) await store.upsert(route(init));
      expect(await store.list()).toHaveLength(valid.length);
    });
  });
});

describe("CustomRouteService", () => {
  let db: TestRedis;
  let log: ReturnType<typeof memoryLogger>;
  let client: Client<typeof CustomRouteService>;

  function clientOver(redis: Redis): Client<typeof CustomRouteService> {
    const store = new CustomRouteStore(redis, { keyPrefix: db.prefix, now: () => NOW });
    const transport = createRouterTransport(customRouteServiceRoutes(store), {
      router: { interceptors: [serverCallInterceptor(log.logger, mapGatewayError)] },
    });
    return createClient(CustomRouteService, transport);
  }

  beforeEach(async () => {
    db = await testRedis("gateway-custom-route-service");
    log = memoryLogger("custom-route-service-test");
    client = clientOver(db.redis);
  });
  afterEach(async () => {
    // Whatever a test did, no log line may carry a secret.
    expect(log.lines().join("\n")).not.toContain(SECRET);
    expect(log.lines().join("\n")).not.toContain(NEW_SECRET);
    await db.cleanup();
  });

  it("upserts, lists and deletes routes, never returning a secret", async () => {
    const { route: created } = await client.upsertCustomRoute({ route: route() });
    expect(created).toEqual(stripped());
    await client.upsertCustomRoute({ route: route({ name: "other", secret: NEW_SECRET }) });
    const { routes } = await client.listCustomRoutes({});
    expect(routes).toEqual([stripped(), stripped({ name: "other" })]);
    await client.deleteCustomRoute({ name: "other" });
    expect((await client.listCustomRoutes({})).routes.map((r) => r.name)).toEqual(["acme"]);
  });

  it("keeps the stored secret when an update sends none", async () => {
    await client.upsertCustomRoute({ route: route() });
    const { route: updated } = await client.upsertCustomRoute({ route: route({ secret: "", eventTypeHeader: "" }) });
    expect(updated).toEqual(stripped({ eventTypeHeader: "" }));
    const store = new CustomRouteStore(db.redis, { keyPrefix: db.prefix });
    expect((await store.get("acme")).secret).toBe(SECRET);
  });

  it("answers INVALID_ARGUMENT naming the field", async () => {
    const cases: [() => Promise<unknown>, string][] = [
      [() => client.upsertCustomRoute({}), "route: is required"],
      [
        () => client.upsertCustomRoute({ route: route({ name: "no spaces" }) }),
        "route.name: must match [A-Za-z0-9_-]{1,64}",
      ],
      [
        () => client.upsertCustomRoute({ route: route({ signatureHeader: "" }) }),
        "route.signature_header: is required",
      ],
      [() => client.upsertCustomRoute({ route: route({ secret: "" }) }), "route.secret: is required for a new route"],
      [() => client.deleteCustomRoute({ name: "" }), "name: is required"],
    ];
    for (const [call, message] of cases) {
      const err = await callError(call());
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toBe(message);
    }
  });

  it("never echoes the secret in an error", async () => {
    const err = await callError(client.upsertCustomRoute({ route: route({ secret: `${SECRET},` }) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).not.toContain(SECRET);
  });

  it("answers NOT_FOUND for deleting a route that does not exist", async () => {
    const err = await callError(client.deleteCustomRoute({ name: "acme" }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toBe("custom route acme not found");
  });

  it("answers UNAVAILABLE when Redis cannot be reached", async () => {
    const offline = clientOver(await closedRedis());
    for (const call of [
      () => offline.listCustomRoutes({}),
      () => offline.upsertCustomRoute({ route: route() }),
      () => offline.deleteCustomRoute({ name: "acme" }),
    ]) {
      const err = await callError(call());
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toBe("gateway store unavailable");
    }
  });

  it("answers INTERNAL, logging no secret, when Redis refuses a command", async () => {
    await db.redis.set(`${db.prefix}custom-routes`, "not a hash");
    const err = await callError(client.upsertCustomRoute({ route: route() }));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(log.lines().some((line) => line.includes("WRONGTYPE"))).toBe(true);
  });

  it("maps an upsert that kept losing a race to ABORTED", () => {
    const err = mapGatewayError(new CustomRouteConflictError("acme"));
    expect(err?.code).toBe(Code.Aborted);
    expect(err?.rawMessage).toBe("custom route acme was changed concurrently; retry");
  });
});
