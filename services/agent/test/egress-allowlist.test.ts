import { memoryLogger } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { EgressAllowlist, isPublicAddress } from "../src/sandbox/egress-allowlist.js";
import { EgressProxy, parseAuthority } from "../src/sandbox/egress-proxy.js";

describe("EgressAllowlist", () => {
  const allowlist = new EgressAllowlist(["api.anthropic.com", "*.github.com", "GitLab.com.", "10.1.2.3", "*"]);

  it("matches exact names case-insensitively, without a trailing dot", () => {
    expect(allowlist.match("api.anthropic.com")).toBe("exact");
    expect(allowlist.match("API.Anthropic.COM.")).toBe("exact");
    expect(allowlist.match("gitlab.com")).toBe("exact");
    expect(allowlist.match("anthropic.com")).toBeUndefined();
    expect(allowlist.match("evil-api.anthropic.com")).toBeUndefined();
    expect(allowlist.match("api.anthropic.com.evil.net")).toBeUndefined();
  });

  it("matches a wildcard's subdomains, not the bare domain nor look-alikes", () => {
    expect(allowlist.match("api.github.com")).toBe("wildcard");
    expect(allowlist.match("a.b.github.com")).toBe("wildcard");
    expect(allowlist.match("github.com")).toBeUndefined();
    expect(allowlist.match("evilgithub.com")).toBeUndefined();
  });

  it("takes IP literals only when listed exactly; a lone * allows nothing", () => {
    expect(allowlist.match("10.1.2.3")).toBe("exact");
    expect(allowlist.match("10.1.2.4")).toBeUndefined();
    expect(new EgressAllowlist(["*.0.0.1"]).match("127.0.0.1")).toBeUndefined();
    expect(allowlist.match("example.org")).toBeUndefined();
  });

  it("tells public addresses from loopback, private, link-local and mapped ones", () => {
    for (const address of ["1.1.1.1", "140.82.112.3", "2606:4700::1111"]) expect(isPublicAddress(address)).toBe(true);
    for (const address of [
      "127.0.0.1",
      "10.0.0.1",
      "172.16.5.4",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "not-an-address",
    ]) {
      expect(isPublicAddress(address)).toBe(false);
    }
  });
});

describe("EgressProxy.decide", () => {
  const resolve = async (host: string) =>
    ({
      "api.github.com": ["140.82.112.3"],
      "internal.github.com": ["10.0.0.7"],
      "metadata.corp.example": ["169.254.169.254"],
    })[host] ?? [];

  it("allows listed names at the address it resolved itself, and refuses the rest", async () => {
    const socket = `/tmp/hookmesh-egress-test-${process.pid}-${Date.now()}.sock`;
    const proxy = await EgressProxy.listen(socket, {
      hosts: ["*.github.com", "metadata.corp.example"],
      logger: memoryLogger().logger,
      resolve,
    });
    try {
      expect(await proxy.decide("api.github.com")).toEqual({ allowed: true, address: "140.82.112.3" });
      expect(await proxy.decide("internal.github.com")).toMatchObject({ allowed: false, reason: /loopback, private/ });
      // Listed exactly: the operator asked for that address.
      expect(await proxy.decide("metadata.corp.example")).toEqual({ allowed: true, address: "169.254.169.254" });
      expect(await proxy.decide("nowhere.github.com")).toEqual({ allowed: false, reason: "does not resolve" });
      expect(await proxy.decide("140.82.112.3")).toMatchObject({ allowed: false });
      expect(await proxy.decide("example.com")).toMatchObject({ allowed: false, reason: /not in the profile/ });
    } finally {
      await proxy.close();
    }
  });

  it("parses CONNECT authorities, IPv6 included, and rejects malformed ones", () => {
    expect(parseAuthority("github.com:443")).toEqual({ host: "github.com", port: 443 });
    expect(parseAuthority("[::1]:8443")).toEqual({ host: "::1", port: 8443 });
    for (const bad of ["github.com", "github.com:0", "github.com:70000", "a:b:443", ""]) {
      expect(parseAuthority(bad)).toBeUndefined();
    }
  });
});
