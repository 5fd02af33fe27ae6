import { createPrivateKey, X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, type Env, envIdentity } from "../src/config.js";
import { devIdentityFiles, ensureDevIdentities } from "../src/identity/dev.js";
import { openIdentity } from "../src/identity/identity.js";
import { peerFromCertificate, spiffeIdsOf } from "../src/identity/spiffe.js";
import { SubjectAlternativeNameExtension, X509CertificateGenerator } from "../src/identity/x509.js";
import { memoryLogger } from "../src/testing/logger.js";

const DAY_MS = 86_400_000;
const homes: string[] = [];

afterEach(() => {
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
});

function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), "hookmesh-identity-"));
  homes.push(home);
  return home;
}

const mode = (path: string) => statSync(path).mode & 0o777;
const certificate = (path: string) => new X509Certificate(readFileSync(path));

/** Every identity's certificate is signed by the CA on disk and matches its key. */
function expectConsistent(home: string, names: readonly string[]) {
  const ca = certificate(join(home, "tls", "ca.crt"));
  expect(ca.checkPrivateKey(createPrivateKey(readFileSync(join(home, "tls", "ca.key"))))).toBe(true);
  for (const name of names) {
    const files = devIdentityFiles(home, name);
    const cert = certificate(files.certFile);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(readFileSync(files.keyFile)))).toBe(true);
  }
}

describe("ensureDevIdentities", () => {
  const names = ["gateway", "tasks", "operator"];

  it("creates a CA and one 90-day certificate per name, private to the user", async () => {
    const home = tempHome();
    const before = Date.now();
    const result = await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names });

    expect(result.caStatus).toBe("created");
    expect(result.identities.map((i) => [i.name, i.id, i.status])).toEqual([
      ["gateway", "spiffe://hookmesh.local/gateway", "created"],
      ["tasks", "spiffe://hookmesh.local/tasks", "created"],
      ["operator", "spiffe://hookmesh.local/operator", "created"],
    ]);
    expect(mode(join(home, "tls"))).toBe(0o700);
    for (const file of ["ca.crt", "ca.key", "gateway.crt", "gateway.key", "tasks.crt", "tasks.key"]) {
      expect(mode(join(home, "tls", file)), file).toBe(0o600);
    }
    const ca = certificate(join(home, "tls", "ca.crt"));
    expect(ca.ca).toBe(true);
    const gateway = certificate(join(home, "tls", "gateway.crt"));
    expect(gateway.ca).toBe(false);
    expect(gateway.subjectAltName).toBe(
      "URI:spiffe://hookmesh.local/gateway, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
    );
    expect(gateway.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    expect(gateway.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: "prime256v1" });
    expect(gateway.checkIssued(ca)).toBe(true);
    const days = (new Date(gateway.validTo).getTime() - before) / DAY_MS;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);
    expectConsistent(home, names);
  });

  it("leaves current files alone on the next call", async () => {
    const home = tempHome();
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names });
    const files = ["ca.crt", "ca.key", "tasks.crt", "tasks.key"].map((f) => join(home, "tls", f));
    const contents = files.map((f) => readFileSync(f, "utf8"));

    const again = await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names });

    expect(again.caStatus).toBe("current");
    expect(again.identities.every((i) => i.status === "current")).toBe(true);
    expect(files.map((f) => readFileSync(f, "utf8"))).toEqual(contents);
  });

  it("renews a certificate with less than 30 days left, keeping the CA", async () => {
    const home = tempHome();
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks"] });
    const old = certificate(join(home, "tls", "tasks.crt"));
    const caBefore = readFileSync(join(home, "tls", "ca.crt"), "utf8");

    const at59Days = await ensureDevIdentities({
      home,
      trustDomain: "hookmesh.local",
      names: ["tasks"],
      now: new Date(Date.now() + 59 * DAY_MS),
    });
    expect(at59Days.identities[0]!.status).toBe("current");

    const later = new Date(Date.now() + 61 * DAY_MS);
    const renewed = await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks"], now: later });
    expect(renewed.caStatus).toBe("current");
    expect(renewed.identities[0]!.status).toBe("renewed");
    const fresh = certificate(join(home, "tls", "tasks.crt"));
    expect(fresh.serialNumber).not.toBe(old.serialNumber);
    expect(new Date(fresh.validTo).getTime()).toBeGreaterThan(later.getTime() + 89 * DAY_MS);
    expect(readFileSync(join(home, "tls", "ca.crt"), "utf8")).toBe(caBefore);
    expectConsistent(home, ["tasks"]);
  });

  it("reissues certificates for a new trust domain, or when asked to", async () => {
    const home = tempHome();
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks"] });
    const moved = await ensureDevIdentities({ home, trustDomain: "example.test", names: ["tasks"] });
    expect(moved.identities[0]).toMatchObject({ id: "spiffe://example.test/tasks", status: "renewed" });
    expect(certificate(join(home, "tls", "tasks.crt")).subjectAltName).toMatch(/^URI:spiffe:\/\/example\.test\/tasks,/);

    const serial = certificate(join(home, "tls", "tasks.crt")).serialNumber;
    const reissued = await ensureDevIdentities({ home, trustDomain: "example.test", names: ["tasks"], reissue: true });
    expect(reissued.identities[0]!.status).toBe("renewed");
    expect(certificate(join(home, "tls", "tasks.crt")).serialNumber).not.toBe(serial);
  });

  it("leaves valid files when two calls race", async () => {
    const home = tempHome();
    const results = await Promise.all([
      ensureDevIdentities({ home, trustDomain: "hookmesh.local", names }),
      ensureDevIdentities({ home, trustDomain: "hookmesh.local", names }),
    ]);
    // One created everything; the other, waiting for the lock, found it current.
    expect(results.map((r) => r.caStatus).sort()).toEqual(["created", "current"]);
    expectConsistent(home, names);
    expect(statSync(join(home, "tls")).isDirectory()).toBe(true);
  });

  it("refuses names that are no file name and trust domains SPIFFE does not allow", async () => {
    const home = tempHome();
    await expect(ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["../x"] })).rejects.toThrow(
      /\.\.\/x/,
    );
    await expect(ensureDevIdentities({ home, trustDomain: "Hookmesh.Local", names: ["tasks"] })).rejects.toThrow(
      /trust domain/,
    );
  });
});

describe("envIdentity", () => {
  async function devHome(): Promise<string> {
    const home = tempHome();
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks", "gateway"] });
    return home;
  }

  function configError(fn: () => unknown): ConfigError {
    try {
      fn();
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error("expected a ConfigError");
  }

  it("defaults to the development files under HOOKMESH_HOME in hookmesh.local", async () => {
    const home = await devHome();
    expect(envIdentity({ HOOKMESH_HOME: home }, "tasks")).toEqual({
      insecure: false,
      id: "spiffe://hookmesh.local/tasks",
      name: "tasks",
      trustDomain: "hookmesh.local",
      certFile: join(home, "tls", "tasks.crt"),
      keyFile: join(home, "tls", "tasks.key"),
      caFile: join(home, "tls", "ca.crt"),
    });
  });

  it("takes the three files from <NAME>_TLS_*_FILE, and the trust domain from HOOKMESH_TRUST_DOMAIN", async () => {
    const home = await devHome();
    const env: Env = {
      HOOKMESH_TRUST_DOMAIN: "prod.example",
      TASKS_TLS_CERT_FILE: join(home, "tls", "gateway.crt"),
      TASKS_TLS_KEY_FILE: join(home, "tls", "gateway.key"),
      TASKS_TLS_CA_FILE: join(home, "tls", "ca.crt"),
    };
    expect(envIdentity(env, "tasks")).toMatchObject({
      id: "spiffe://prod.example/tasks",
      certFile: env.TASKS_TLS_CERT_FILE,
      keyFile: env.TASKS_TLS_KEY_FILE,
      caFile: env.TASKS_TLS_CA_FILE,
    });
  });

  it("names the variable to fix when a file is missing or only some are set", async () => {
    const home = tempHome();
    const missing = configError(() => envIdentity({ HOOKMESH_HOME: home }, "tasks"));
    expect(missing.variable).toBe("TASKS_TLS_CERT_FILE");
    expect(missing.message).toMatch(/ENOENT.*npx hookmesh certs/);

    const partial = configError(() =>
      envIdentity({ TASKS_TLS_CERT_FILE: "/x.crt", TASKS_TLS_KEY_FILE: "/x.key" }, "tasks"),
    );
    expect(partial.variable).toBe("TASKS_TLS_CA_FILE");

    const domain = configError(() =>
      envIdentity({ HOOKMESH_HOME: home, HOOKMESH_TRUST_DOMAIN: "Not A Domain" }, "tasks"),
    );
    expect(domain.variable).toBe("HOOKMESH_TRUST_DOMAIN");
  });

  it("requires https peers under mTLS", async () => {
    const home = await devHome();
    const err = configError(() =>
      envIdentity({ HOOKMESH_HOME: home }, "gateway", { peers: { TASKS_URL: "http://tasks:50051" } }),
    );
    expect(err.variable).toBe("TASKS_URL");
    expect(err.message).toMatch(/https/);
    expect(
      envIdentity({ HOOKMESH_HOME: home }, "gateway", { peers: { TASKS_URL: "https://tasks:50051" } }).insecure,
    ).toBe(false);
  });

  describe("with HOOKMESH_INSECURE=1", () => {
    const insecure = { HOOKMESH_INSECURE: "1" };

    it("allows cleartext on loopback only", () => {
      const endpoints = {
        listen: { TASKS_HOST: "127.0.0.1", OTHER_HOST: "::1" },
        peers: { A_URL: "http://127.0.0.1:1", B_URL: "http://localhost:2", C_URL: "http://[::1]:3" },
      };
      expect(envIdentity(insecure, "tasks", endpoints)).toEqual({ insecure: true });
    });

    it("refuses a non-loopback bind, naming the variable and HOOKMESH_INSECURE", () => {
      const err = configError(() => envIdentity(insecure, "tasks", { listen: { TASKS_HOST: "0.0.0.0" } }));
      expect(err.variable).toBe("TASKS_HOST");
      expect(err.message).toMatch(/HOOKMESH_INSECURE=1 allows cleartext on loopback only.*0\.0\.0\.0/);
    });

    it("refuses a non-loopback or https peer", () => {
      const remote = configError(() =>
        envIdentity(insecure, "gateway", { peers: { TASKS_URL: "http://tasks:50051" } }),
      );
      expect([remote.variable, remote.message]).toEqual([
        "TASKS_URL",
        expect.stringMatching(/HOOKMESH_INSECURE.*"tasks"/),
      ]);
      const tls = configError(() =>
        envIdentity(insecure, "gateway", { peers: { TASKS_URL: "https://127.0.0.1:50051" } }),
      );
      expect([tls.variable, tls.message]).toEqual(["TASKS_URL", expect.stringMatching(/http:\/\//)]);
    });

    it("refuses TLS files beside it", () => {
      const err = configError(() => envIdentity({ ...insecure, TASKS_TLS_CERT_FILE: "/x.crt" }, "tasks"));
      expect(err.variable).toBe("HOOKMESH_INSECURE");
    });
  });
});

describe("peerFromCertificate", () => {
  /** The subject alternative names, as Node.js lists them, of a certificate naming `uris`. */
  async function certificateNaming(...uris: string[]): Promise<string | undefined> {
    const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const cert = await X509CertificateGenerator.createSelfSigned({
      name: "CN=test",
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [
        new SubjectAlternativeNameExtension([
          { type: "dns", value: "localhost" },
          ...uris.map((value) => ({ type: "url" as const, value })),
        ]),
      ],
    });
    return new X509Certificate(cert.toString("pem")).subjectAltName;
  }

  it("proves the one SPIFFE id of the trust domain", async () => {
    const names = await certificateNaming("https://example.com/", "spiffe://hookmesh.local/operator/alice");
    expect(peerFromCertificate(names, "hookmesh.local")).toEqual({
      id: "spiffe://hookmesh.local/operator/alice",
      name: "operator/alice",
      via: "mtls",
    });
  });

  it("proves nothing with no SPIFFE id, several, one of another trust domain, or an invalid path", async () => {
    const cases = await Promise.all([
      certificateNaming(),
      certificateNaming("spiffe://hookmesh.local/a", "spiffe://hookmesh.local/b"),
      certificateNaming("spiffe://other.test/gateway"),
      certificateNaming("spiffe://hookmesh.local.evil/gateway"),
      certificateNaming("spiffe://hookmesh.local/../gateway"),
    ]);
    for (const names of cases) expect(peerFromCertificate(names, "hookmesh.local")).toBeUndefined();
    expect(peerFromCertificate(undefined, "hookmesh.local")).toBeUndefined();
  });

  it("reads a name holding a delimiter as the one name it is", async () => {
    const tricky = "spiffe://evil.test/x, URI:spiffe://hookmesh.local/gateway";
    expect(spiffeIdsOf(await certificateNaming(tricky, 'spiffe://hookmesh.local/"quoted"'))).toEqual([
      tricky,
      'spiffe://hookmesh.local/"quoted"',
    ]);
  });
});

describe("openIdentity", () => {
  /** The mTLS configuration for `name` in `home`. */
  function tlsConfig(home: string, name: string) {
    const config = envIdentity({ HOOKMESH_HOME: home }, name);
    if (config.insecure) throw new Error("expected an mTLS configuration");
    return config;
  }

  it("is undefined in insecure mode", () => {
    expect(openIdentity({ insecure: true }, memoryLogger().logger)).toBeUndefined();
  });

  it("refuses at start a certificate for another identity or a key that does not match", async () => {
    const home = tempHome();
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks", "gateway"] });
    const config = tlsConfig(home, "tasks");
    const { logger } = memoryLogger();
    expect(() => openIdentity({ ...config, certFile: join(home, "tls", "gateway.crt") }, logger)).toThrow(
      /expected spiffe:\/\/hookmesh\.local\/tasks, the certificate names spiffe:\/\/hookmesh\.local\/gateway/,
    );
    copyFileSync(join(home, "tls", "gateway.key"), join(home, "tls", "tasks.key"));
    expect(() => openIdentity(config, logger)).toThrow(/tasks\.key: does not match the certificate/);
  });

  it("refuses a certificate its CA bundle did not issue", async () => {
    const [home, other] = [tempHome(), tempHome()];
    await ensureDevIdentities({ home, trustDomain: "hookmesh.local", names: ["tasks"] });
    await ensureDevIdentities({ home: other, trustDomain: "hookmesh.local", names: ["tasks"] });
    const config = tlsConfig(home, "tasks");
    expect(() => openIdentity({ ...config, caFile: join(other, "tls", "ca.crt") }, memoryLogger().logger)).toThrow(
      /not issued by a CA in/,
    );
  });
});
