import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Certificate, Issuer } from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Namespace, Service, ServiceAccount } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

/**
 * deploy/kubernetes, rendered as a cluster would get it (`kubectl kustomize` of each overlay)
 * and validated offline: every object against its Kubernetes schema (kubernetes-models), the
 * cert-manager, KEDA and Prometheus Operator objects against their CRDs' schemas
 * (@kubernetes-models/*), then for what the deployment promises.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));
const OVERLAYS = ["dev", "production"] as const;
const MESH = ["gateway", "tasks", "agent", "github", "slack", "jira", "sentry", "dashboard"];
const GRPC_PORTS: Record<string, number> = {
  gateway: 50050,
  tasks: 50051,
  agent: 50052,
  github: 50061,
  slack: 50062,
  jira: 50063,
  sentry: 50064,
  dashboard: 50070,
};

interface Model {
  validate(): void;
}
type ModelClass = new (data: never) => Model;
/** The schema of every kind the overlays may hold; any other kind fails the test. */
const MODELS: Record<string, ModelClass> = {
  "v1/Namespace": Namespace,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "apps/v1/Deployment": Deployment,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "cert-manager.io/v1/Certificate": Certificate,
  "cert-manager.io/v1/Issuer": Issuer,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

/** A rendered object; its spec and data are read field by field, as the assertions need. */
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // biome-ignore lint/suspicious/noExplicitAny: any kind's spec, validated by its schema above
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: a ConfigMap's data
  data?: any;
}

function kubectl(): boolean {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const hasKubectl = kubectl();
if (!hasKubectl)
  console.warn("kubectl is not installed: the Kubernetes overlays are not rendered (.ci/run installs it)");

function render(overlay: string): Manifest[] {
  const text = execFileSync("kubectl", ["kustomize", join(root, "deploy/kubernetes/overlays", overlay)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  return parseAllDocuments(text).map((document) => document.toJS() as Manifest);
}

const find = (objects: Manifest[], kind: string, name: string) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);

describe.runIf(hasKubectl)("deploy/kubernetes", () => {
  const rendered = Object.fromEntries(OVERLAYS.map((overlay) => [overlay, render(overlay)]));

  it.each(OVERLAYS)("%s: every object is valid against its schema, in the overlay's namespace", (overlay) => {
    const objects = rendered[overlay]!;
    expect(objects.length).toBeGreaterThan(50);
    const namespace = overlay === "dev" ? "hookmesh-dev" : "hookmesh";
    for (const object of objects) {
      const id = `${object.kind} ${object.metadata.name}`;
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `no schema for ${object.apiVersion} ${object.kind}`).toBeDefined();
      expect(() => new Model!(object as never).validate(), id).not.toThrow();
      if (object.kind !== "Namespace") expect(object.metadata.namespace, id).toBe(namespace);
    }
    expect(find(objects, "Namespace", namespace)).toBeDefined();
  });

  it("the validation does reject a broken object", () => {
    const deployment = structuredClone(find(rendered.dev!, "Deployment", "tasks")!);
    deployment.spec.replicas = "two";
    expect(() => new Deployment(deployment as never).validate()).toThrow(/replicas must be integer/);
    const scaled = structuredClone(find(rendered.dev!, "ScaledObject", "agent")!);
    scaled.spec.triggers[0].metadata.threshold = 2;
    expect(() => new ScaledObject(scaled as never).validate()).toThrow(/threshold must be string/);
  });

  it.each(OVERLAYS)("%s: a Deployment per service, probed on its admin port, limited, non-root", (overlay) => {
    const objects = rendered[overlay]!;
    for (const name of MESH) {
      const deployment = find(objects, "Deployment", name)!;
      expect(deployment, name).toBeDefined();
      const pod = deployment.spec.template.spec;
      const [container] = pod.containers;
      const admin = GRPC_PORTS[name]! + 1000;
      expect(container.ports).toEqual(
        expect.arrayContaining([
          { name: "grpc", containerPort: GRPC_PORTS[name] },
          { name: "admin", containerPort: admin },
        ]),
      );
      expect(container.livenessProbe.httpGet, name).toEqual({ path: "/livez", port: "admin" });
      expect(container.readinessProbe.httpGet, name).toEqual({ path: "/readyz", port: "admin" });
      expect(container.startupProbe.httpGet, name).toEqual({ path: "/livez", port: "admin" });
      for (const kind of ["requests", "limits"]) {
        expect(Object.keys(container.resources[kind]).sort(), `${name} ${kind}`).toEqual(["cpu", "memory"]);
      }
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 });
      expect(container.securityContext).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
      });
      // Only the agent's sandbox (bubblewrap's user namespaces) needs more than the default profile.
      expect(pod.securityContext.seccompProfile.type, name).toBe(name === "agent" ? "Unconfined" : "RuntimeDefault");
      expect(pod.serviceAccountName).toBe(`hookmesh-${name}`);
      expect(find(objects, "ServiceAccount", `hookmesh-${name}`), name).toBeDefined();
      expect(pod.automountServiceAccountToken).toBe(false);
      // Longer than the drain (SHUTDOWN_GRACE_MS), so the kubelet never kills a draining pod.
      const drain = Number(find(objects, "ConfigMap", "hookmesh-config")!.data.SHUTDOWN_GRACE_MS) / 1000;
      expect(pod.terminationGracePeriodSeconds, name).toBeGreaterThan(drain);
      expect(container.image, name).toMatch(name === "agent" ? /hookmesh-agent:/ : /hookmesh:/);
      expect(container.args, name).toEqual([
        name === "gateway" ? "dist/gateway/src/main.js" : `dist/services/${name}/src/main.js`,
      ]);
    }
  });

  it.each(OVERLAYS)(
    "%s: headless Services for client-side gRPC balancing, scraped by one ServiceMonitor",
    (overlay) => {
      const objects = rendered[overlay]!;
      for (const name of MESH) {
        const service = find(objects, "Service", name)!;
        expect(service.spec.clusterIP, name).toBe("None");
        expect(service.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port])).toEqual([
          ["grpc", GRPC_PORTS[name]],
          ["admin", GRPC_PORTS[name]! + 1000],
        ]);
      }
      const monitor = find(objects, "ServiceMonitor", "hookmesh")!;
      expect(monitor.spec.endpoints).toEqual([{ port: "admin", path: "/metrics", interval: "30s", scheme: "http" }]);
      const scraped = objects.filter(
        (o) =>
          o.kind === "Service" && (o.metadata as { labels?: Record<string, string> }).labels?.["hookmesh.dev/metrics"],
      );
      expect(scraped.map((s) => s.metadata.name).sort()).toEqual([...MESH].sort());
    },
  );

  it.each(OVERLAYS)(
    "%s: an identity per service, a cert-manager Certificate whose URI SAN is its SPIFFE id",
    (overlay) => {
      const objects = rendered[overlay]!;
      const trustDomain = find(objects, "ConfigMap", "hookmesh-config")!.data.HOOKMESH_TRUST_DOMAIN;
      for (const name of [...MESH, "operator"]) {
        const certificate = find(objects, "Certificate", `hookmesh-${name}`)!;
        expect(certificate.spec.uris, name).toEqual([`spiffe://${trustDomain}/${name}`]);
        expect(certificate.spec.privateKey).toMatchObject({ algorithm: "ECDSA", size: 256 });
        expect(find(objects, "Issuer", certificate.spec.issuerRef.name), name).toBeDefined();
        if (name === "operator") continue;
        const pod = find(objects, "Deployment", name)!.spec.template.spec;
        const tls = pod.volumes.find((v: { name: string }) => v.name === "tls");
        expect(tls.secret.secretName).toBe(certificate.spec.secretName);
        const env = Object.fromEntries(
          pod.containers[0].env.map((e: { name: string; value?: string }) => [e.name, e.value]),
        );
        const prefix = name.toUpperCase();
        expect(env[`${prefix}_TLS_CERT_FILE`]).toBe("/var/run/hookmesh/tls/tls.crt");
        expect(env[`${prefix}_TLS_KEY_FILE`]).toBe("/var/run/hookmesh/tls/tls.key");
        expect(env[`${prefix}_TLS_CA_FILE`]).toBe("/var/run/hookmesh/tls/ca.crt");
      }
      expect(
        Object.values(find(objects, "ConfigMap", "hookmesh-config")!.data).filter((v) => /^http:/.test(String(v))),
      ).toEqual([]);
    },
  );

  it.each(OVERLAYS)("%s: Secrets referenced, never embedded", (overlay) => {
    const objects = rendered[overlay]!;
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
    const secretLike = /SECRET|TOKEN|PASSWORD|PRIVATE_KEY|DATABASE_URL/;
    for (const deployment of objects.filter((o) => o.kind === "Deployment")) {
      for (const container of deployment.spec.template.spec.containers) {
        for (const variable of container.env ?? []) {
          if (!secretLike.test(variable.name) || variable.name.endsWith("_FILE")) continue;
          expect(variable.value, `${deployment.metadata.name} ${variable.name}`).toBeUndefined();
          expect(variable.valueFrom?.secretKeyRef, `${deployment.metadata.name} ${variable.name}`).toBeDefined();
        }
      }
    }
    const gateway = find(objects, "Deployment", "gateway")!.spec.template.spec;
    const webhooks = gateway.volumes.find((v: { name: string }) => v.name === "secrets");
    expect(webhooks.secret).toMatchObject({ secretName: "hookmesh-gateway-webhooks", optional: false });
    expect(find(objects, "Deployment", "dashboard")!.spec.template.spec.containers[0].env).toContainEqual({
      name: "DASHBOARD_DATABASE_URL",
      valueFrom: { secretKeyRef: { name: "hookmesh-dashboard-database", key: "url" } },
    });
  });

  it.each(OVERLAYS)("%s: default deny, then only the architecture's paths", (overlay) => {
    const objects = rendered[overlay]!;
    expect(find(objects, "NetworkPolicy", "default-deny")!.spec).toEqual({
      podSelector: {},
      policyTypes: ["Ingress", "Egress"],
    });
    const policy = (name: string) => find(objects, "NetworkPolicy", name)!.spec;
    const callers = (name: string) =>
      policy(name)
        .ingress.filter((rule: { ports: { port: number }[] }) => rule.ports[0]!.port === GRPC_PORTS[name])
        .flatMap((rule: { from: { podSelector: { matchLabels: Record<string, string> } }[] }) =>
          rule.from.map((peer) => peer.podSelector.matchLabels["app.kubernetes.io/name"]),
        )
        .sort();
    expect(callers("tasks")).toEqual(["agent", "dashboard", "gateway"]);
    expect(callers("github")).toEqual(["agent", "dashboard", "tasks"]);
    expect(callers("slack")).toEqual(["agent", "dashboard"]);
    expect(callers("agent")).toEqual(["dashboard"]);
    expect(callers("gateway")).toEqual(["dashboard"]);
    // The agent worker runs strangers' code: no Redis, no PostgreSQL, no cluster address but the mesh's.
    const agentEgress = policy("agent").egress;
    const ports = agentEgress.flatMap((rule: { ports: { port: number }[] }) => rule.ports.map((p) => p.port));
    expect(ports).not.toContain(6379);
    expect(ports).not.toContain(5432);
    const internet = agentEgress.find((rule: { to?: { ipBlock?: unknown }[] }) => rule.to?.[0]?.ipBlock);
    expect(internet.to[0].ipBlock.except).toEqual(
      expect.arrayContaining(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
    );
    // Every pod of the mesh is selected by a policy of its own.
    for (const name of MESH) expect(policy(name).podSelector.matchLabels["app.kubernetes.io/name"]).toBe(name);
  });

  it.each(OVERLAYS)("%s: a PodDisruptionBudget per service", (overlay) => {
    const objects = rendered[overlay]!;
    for (const name of MESH) {
      expect(find(objects, "PodDisruptionBudget", name)!.spec, name).toEqual({
        maxUnavailable: 1,
        selector: { matchLabels: { "app.kubernetes.io/name": name } },
      });
    }
  });

  it.each(OVERLAYS)("%s: agents scale on queue depth (KEDA, Prometheus trigger)", (overlay) => {
    const scaled = find(rendered[overlay]!, "ScaledObject", "agent")!.spec;
    expect(scaled.scaleTargetRef).toEqual({ name: "agent" });
    expect(scaled.triggers).toHaveLength(1);
    expect(scaled.triggers[0].type).toBe("prometheus");
    expect(scaled.triggers[0].metadata.query).toBe('sum(hookmesh_tasks_queue_depth{state="ready"})');
    expect(scaled.minReplicaCount).toBeLessThan(scaled.maxReplicaCount);
  });

  it("production: two or more replicas of every service, images from a registry", () => {
    const objects = rendered.production!;
    for (const name of MESH.filter((n) => n !== "agent")) {
      expect(find(objects, "Deployment", name)!.spec.replicas, name).toBeGreaterThanOrEqual(2);
    }
    expect(find(objects, "ScaledObject", "agent")!.spec.minReplicaCount).toBeGreaterThanOrEqual(2);
    for (const deployment of objects.filter((o) => o.kind === "Deployment")) {
      expect(deployment.spec.template.spec.containers[0].image).toMatch(/^[a-z0-9.-]+\/hookmesh(-agent)?:\d/);
    }
    expect(objects.filter((o) => ["redis", "postgres"].includes(o.metadata.name))).toEqual([]);
  });

  it("dev: Redis and PostgreSQL in the namespace, the integrations dry, the demo agent", () => {
    const objects = rendered.dev!;
    for (const store of ["redis", "postgres"]) {
      expect(find(objects, "Deployment", store), store).toBeDefined();
      expect(find(objects, "NetworkPolicy", store), store).toBeDefined();
    }
    expect(find(objects, "NetworkPolicy", "postgres")!.spec.ingress[0].from).toEqual([
      { podSelector: { matchLabels: { "app.kubernetes.io/name": "dashboard" } } },
    ]);
    expect(find(objects, "ConfigMap", "hookmesh-config")!.data.HOOKMESH_DRY_RUN).toBe("1");
    const agent = find(objects, "Deployment", "agent")!.spec.template.spec.containers[0];
    expect(agent.env).toContainEqual(expect.objectContaining({ name: "AGENT_COMMAND" }));
    expect(agent.image).toBe("hookmesh-agent:dev");
  });

  it("the kustomizations render alike under kustomize 2 (Debian's kubectl) and today's: no newer syntax", () => {
    for (const file of [
      "base/kustomization.yaml",
      "overlays/dev/kustomization.yaml",
      "overlays/production/kustomization.yaml",
    ]) {
      const text = readFileSync(join(root, "deploy/kubernetes", file), "utf8");
      expect(text, file).not.toMatch(/^(patches|components|labels|replicas|sortOptions):/m);
    }
  });
});
