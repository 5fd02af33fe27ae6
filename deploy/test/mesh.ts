/** The mesh's services, in the order they start (the compose file's and the overlays'). */
export const MESH = ["tasks", "github", "slack", "jira", "sentry", "agent", "gateway", "dashboard"];

/** Each service's gRPC port (ARCHITECTURE.md); its admin port is this + 1000. */
export const GRPC_PORTS: Record<string, number> = {
  gateway: 50050,
  tasks: 50051,
  agent: 50052,
  github: 50061,
  slack: 50062,
  jira: 50063,
  sentry: 50064,
  dashboard: 50070,
};
