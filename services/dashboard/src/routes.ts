import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { type ClientFactory, callOptionsFrom, type Logger, type LookupAll, type PeerTarget } from "@hookmesh/kit";
import {
  DashboardService,
  type ListTasksRequest,
  WatchTaskResponseSchema,
} from "../../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import { DeliveryService } from "../../../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { RouteService } from "../../../gen/hookmesh/tasks/v1/route_service_pb.js";
import { TaskService } from "../../../gen/hookmesh/tasks/v1/task_service_pb.js";
import { actorOf, fromBrowser } from "./actor.js";
import { analytics, analyticsRange } from "./analytics.js";
import { listAudit, recordAudit } from "./audit.js";
import type { Database } from "./db.js";
import { drainWorker, type KnownService, listWorkers, meshHealth } from "./mesh.js";
import type { Notifier } from "./notifier.js";
import { eventSeq, eventsAfter, FINAL_STATES, getTask, listTasks } from "./read-model.js";
import type { SignIns } from "./sign-in.js";
import type { Site } from "./web.js";

export interface RoutesDeps {
  db: Database;
  notifier: Notifier;
  signIns: SignIns;
  /** Calls the mesh as the dashboard. */
  clients: ClientFactory;
  logger: Logger;
  tasksUrl: string;
  gatewayUrl: string;
  /** AGENT_URL's targets: each URL a worker, each `dns:///` target every worker it resolves to. */
  agents: readonly PeerTarget[];
  /** Resolves `dns:///` agents; the system resolver by default. */
  lookup?: LookupAll;
  /** Every service GetMeshHealth checks. */
  services: readonly KnownService[];
  /** Where sign-in links point. */
  site: Site;
  traceUrlTemplate: string;
  /** How often a watch looks at the read model when no notice came (a missed notice costs at most this). */
  watchPollMs?: number;
  now?: () => number;
}

const DEFAULT_PAGE = 50;
const MAX_PAGE = 500;

/** DashboardService: reads from the read model; actions forwarded as the dashboard and recorded in the audit log. */
export function routes(deps: RoutesDeps) {
  const { db, notifier, clients, logger } = deps;
  const now = deps.now ?? Date.now;
  const tasks = clients.client(TaskService, deps.tasksUrl, "tasks");
  const taskRoutes = clients.client(RouteService, deps.tasksUrl, "tasks");
  const deliveries = clients.client(DeliveryService, deps.gatewayUrl, "gateway");
  const watchPollMs = deps.watchPollMs ?? 5_000;

  /** Runs a forwarded action and records who did it and how it went; the owner's error passes through as it came. */
  async function audited<T>(ctx: HandlerContext, action: string, target: string, act: () => Promise<T>): Promise<T> {
    let outcome = "OK";
    let detail = "";
    try {
      return await act();
    } catch (err) {
      const error = ConnectError.from(err);
      outcome = codeName(error.code);
      detail = error.rawMessage;
      // The code and message only: the owner's response headers (its content-type among them)
      // are not this response's, and a browser cannot read an error sent under gRPC's.
      throw new ConnectError(error.rawMessage, error.code);
    } finally {
      await recordAudit(db, { actor: actorOf(ctx), action, target, outcome, detail }).catch((err: unknown) =>
        logger.error({ err, action, target, outcome }, "could not record an action in the audit log"),
      );
    }
  }

  return (router: ConnectRouter) =>
    router.service(DashboardService, {
      async listTasks(req) {
        const pageSize = req.pageSize <= 0 ? DEFAULT_PAGE : Math.min(req.pageSize, MAX_PAGE);
        const filters = {
          provider: req.provider,
          state: req.state,
          routeId: req.routeId,
          subject: req.subject,
          text: req.text,
        };
        const afterId = req.pageToken === "" ? undefined : readPageToken(req.pageToken, filterKey(req));
        const page = await listTasks(db, filters, pageSize, afterId);
        const last = page.tasks.at(-1);
        return {
          tasks: page.tasks,
          nextPageToken: page.more && last ? pageToken(last.id, filterKey(req)) : "",
          totalSize: BigInt(page.total),
        };
      },

      async getTask(req) {
        const found = await getTask(db, req.id);
        if (!found) throw new ConnectError(`task ${req.id} not found`, Code.NotFound);
        const events = await eventsAfter(db, req.id);
        return {
          task: found.task,
          events: events.map((e) => e.event),
          traceUrl:
            deps.traceUrlTemplate === "" || found.traceId === ""
              ? ""
              : deps.traceUrlTemplate.replaceAll("{trace_id}", found.traceId),
        };
      },

      async *watchTask(req, ctx) {
        if (!(await getTask(db, req.id))) throw new ConnectError(`task ${req.id} not found`, Code.NotFound);
        let after = 0;
        if (req.afterEventId !== "") {
          const seq = await eventSeq(db, req.id, req.afterEventId);
          if (seq === undefined) {
            throw new ConnectError(`task ${req.id} has no event ${req.afterEventId}`, Code.NotFound);
          }
          after = seq;
        }
        // Subscribed before the first read, so that nothing applied in between goes unnoticed.
        let noticed = false;
        let wake: (() => void) | undefined;
        const unsubscribe = notifier.subscribe(req.id, () => {
          noticed = true;
          wake?.();
        });
        try {
          while (!ctx.signal.aborted) {
            noticed = false;
            for (const stored of await eventsAfter(db, req.id, after)) {
              after = stored.seq;
              yield create(WatchTaskResponseSchema, {
                event: stored.event,
                ...(stored.task && { task: stored.task }),
              });
            }
            // A task's final record and the event that made it final are applied together, but
            // maybe after the read above: what was applied since goes out before the stream ends.
            const current = await getTask(db, req.id);
            if (!current || FINAL_STATES.has(current.task.state)) {
              for (const stored of await eventsAfter(db, req.id, after)) {
                after = stored.seq;
                yield create(WatchTaskResponseSchema, {
                  event: stored.event,
                  ...(stored.task && { task: stored.task }),
                });
              }
              return;
            }
            if (!noticed) {
              await new Promise<void>((resolve) => {
                const timer = setTimeout(done, watchPollMs);
                ctx.signal.addEventListener("abort", done, { once: true });
                wake = done;
                function done() {
                  clearTimeout(timer);
                  ctx.signal.removeEventListener("abort", done);
                  wake = undefined;
                  resolve();
                }
              });
            }
          }
        } finally {
          unsubscribe();
        }
      },

      async getAnalytics(req) {
        let range: ReturnType<typeof analyticsRange>;
        try {
          range = analyticsRange(
            req.startTime && timestampMs(req.startTime),
            req.endTime && timestampMs(req.endTime),
            req.bucket && durationMs(req.bucket),
            now(),
          );
        } catch (err) {
          if (err instanceof RangeError) throw new ConnectError(err.message, Code.InvalidArgument);
          throw err;
        }
        return analytics(db, range);
      },

      cancelTask: (req, ctx) =>
        audited(ctx, "CancelTask", req.id, async () => {
          const res = await tasks.cancelTask({ id: req.id, reason: req.reason }, callOptionsFrom(ctx));
          return { ...(res.task && { task: res.task }) };
        }),

      retryTask: (req, ctx) =>
        audited(ctx, "RetryTask", req.id, async () => {
          const res = await tasks.retryTask({ id: req.id }, callOptionsFrom(ctx));
          return { ...(res.task && { task: res.task }) };
        }),

      async listDeliveries(req, ctx) {
        const res = await forwarded(
          deliveries.listDeliveries(
            { pageSize: req.pageSize, pageToken: req.pageToken, provider: req.provider, status: req.status },
            callOptionsFrom(ctx),
          ),
        );
        return {
          deliveries: res.deliveries.map((d) => ({ ...d, rawBody: new Uint8Array() })),
          nextPageToken: res.nextPageToken,
        };
      },

      redeliver: (req, ctx) =>
        audited(ctx, "Redeliver", req.id, async () => {
          const res = await deliveries.redeliver({ id: req.id }, callOptionsFrom(ctx));
          return { ...(res.delivery && { delivery: { ...res.delivery, rawBody: new Uint8Array() } }) };
        }),

      async listRoutes(_req, ctx) {
        const res = await forwarded(taskRoutes.listRoutes({}, callOptionsFrom(ctx)));
        return { routes: res.routes };
      },

      upsertRoute: (req, ctx) =>
        audited(ctx, "UpsertRoute", req.route?.id ?? "", async () => {
          const res = await taskRoutes.upsertRoute({ ...(req.route && { route: req.route }) }, callOptionsFrom(ctx));
          return { ...(res.route && { route: res.route }) };
        }),

      deleteRoute: (req, ctx) =>
        audited(ctx, "DeleteRoute", req.id, async () => {
          await taskRoutes.deleteRoute({ id: req.id }, callOptionsFrom(ctx));
          return {};
        }),

      async listWorkers(_req, ctx) {
        return { workers: await listWorkers(clients, deps.agents, callOptionsFrom(ctx), deps.lookup) };
      },

      drainWorker: (req, ctx) =>
        audited(ctx, "DrainWorker", req.id, async () => ({
          runsInProgress: await drainWorker(clients, deps.agents, req.id, callOptionsFrom(ctx), deps.lookup),
        })),

      getMeshHealth: (_req, ctx) => meshHealth(clients, deps.services, callOptionsFrom(ctx)),

      async listAuditEntries(req) {
        const pageSize = req.pageSize <= 0 ? DEFAULT_PAGE : Math.min(req.pageSize, MAX_PAGE);
        const before = req.pageToken === "" ? undefined : Number(readPageToken(req.pageToken, "audit"));
        if (before !== undefined && !Number.isSafeInteger(before)) {
          throw new ConnectError("invalid page token", Code.InvalidArgument);
        }
        const page = await listAudit(db, pageSize, before);
        const last = page.entries.at(-1);
        return { entries: page.entries, nextPageToken: page.more && last ? pageToken(last.id, "audit") : "" };
      },

      async createSignInLink(req, ctx) {
        // A browser session acts as the operator, but must not be able to extend itself forever.
        if (fromBrowser(ctx)) {
          throw new ConnectError("sign-in links are issued on the gRPC port only", Code.PermissionDenied);
        }
        const name = req.name.trim() === "" ? actorOf(ctx) : req.name.trim();
        if (name.length > 200 || /[\p{Cc}]/u.test(name)) {
          throw new ConnectError("name: at most 200 characters, no control characters", Code.InvalidArgument);
        }
        const link = await deps.signIns.createLink(name);
        logger.info({ name, expires: new Date(link.expireMs).toISOString() }, "sign-in link issued");
        return {
          url: `${deps.site.publicUrl}/login?token=${encodeURIComponent(link.token)}`,
          expireTime: timestampFromMs(link.expireMs),
        };
      },
    });
}

/** A read's answer from the owning service, its error passed on with its code and message only (see `audited`). */
async function forwarded<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    const error = ConnectError.from(err);
    throw new ConnectError(error.rawMessage, error.code);
  }
}

/** `INVALID_ARGUMENT` for Code.InvalidArgument: how the proto and the audit log spell codes. */
function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function filterKey(req: ListTasksRequest): string {
  return JSON.stringify([req.provider, req.state, req.routeId, req.subject, req.text]);
}

/** An opaque token: where the page ends, and for which filters, so that it is not reused with others. */
function pageToken(position: string, filters: string): string {
  return Buffer.from(JSON.stringify({ p: position, f: filters })).toString("base64url");
}

function readPageToken(token: string, filters: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new ConnectError("invalid page token", Code.InvalidArgument);
  }
  const { p, f } = (parsed ?? {}) as { p?: unknown; f?: unknown };
  if (typeof p !== "string") throw new ConnectError("invalid page token", Code.InvalidArgument);
  if (f !== filters) throw new ConnectError("page token was issued for other filters", Code.InvalidArgument);
  return p;
}
