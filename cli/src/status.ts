import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import type { Env } from "@hookmesh/kit";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import type { Replica } from "./replicas.js";
import { type ServiceEntry, serviceUrl } from "./services.js";

export interface ServiceStatus {
  name: string;
  url: string;
  /** SERVING, NOT_SERVING, ... or why the check failed (e.g. "unreachable"). */
  status: string;
  healthy: boolean;
}

/**
 * Asks each replica's grpc.health.v1.Health for the whole server's status. A service run once
 * is asked where `<NAME>_URL` says (or its default port), one with replicas at each replica's
 * own address, as `hookmesh start --replicas` lays them out.
 */
export async function checkStatus(
  replicas: readonly Pick<Replica, "service" | "name" | "url">[],
  env: Env,
  transport: (service: ServiceEntry, baseUrl: string) => Transport,
  timeoutMs = 2_000,
): Promise<ServiceStatus[]> {
  return Promise.all(
    replicas.map(async ({ service, name, url: replicaUrl }) => {
      const url = name === service.name ? serviceUrl(service, env) : replicaUrl;
      const client = createClient(Health, transport(service, url));
      try {
        const res = await client.check({ service: "" }, { timeoutMs });
        return {
          name,
          url,
          status: ServingStatus[res.status],
          healthy: res.status === ServingStatus.SERVING,
        };
      } catch (err) {
        const error = ConnectError.from(err);
        const reason = error.code === Code.Unavailable ? "unreachable" : `${Code[error.code]}: ${error.rawMessage}`;
        return { name, url, status: reason, healthy: false };
      }
    }),
  );
}

export function formatStatus(rows: readonly ServiceStatus[]): string {
  const width = (pick: (r: ServiceStatus) => string, title: string) =>
    Math.max(title.length, ...rows.map((r) => pick(r).length));
  const nameWidth = width((r) => r.name, "SERVICE");
  const urlWidth = width((r) => r.url, "ADDRESS");
  const line = (a: string, b: string, c: string) => `${a.padEnd(nameWidth)}  ${b.padEnd(urlWidth)}  ${c}`.trimEnd();
  return [line("SERVICE", "ADDRESS", "STATUS"), ...rows.map((r) => line(r.name, r.url, r.status))].join("\n");
}
