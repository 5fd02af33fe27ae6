import { describe, expect, it } from "vitest";
import { EndpointRecord, outlierOptions, RoundRobinPicker } from "../src/client/outlier.js";
import { normalizePeer, parsePeer, targetUrl } from "../src/client/peer.js";

const options = outlierOptions({ consecutiveFailures: 3, baseEjectionMs: 1_000, maxEjectionMs: 3_500 });

function records(...origins: string[]): EndpointRecord[] {
  return origins.map((origin) => new EndpointRecord(origin, options));
}

function picks(picker: RoundRobinPicker, endpoints: EndpointRecord[], now: number, count: number): string[] {
  return Array.from({ length: count }, () => picker.pick(endpoints, now)!.origin);
}

describe("peer values", () => {
  it("parse into URLs and dns:/// targets, in one spelling", () => {
    expect(parsePeer(" http://127.0.0.1:50051/ , dns:///tasks.svc:50051,dns:///[::1]:7", "http:")).toEqual([
      { kind: "url", origin: "http://127.0.0.1:50051" },
      { kind: "dns", host: "tasks.svc", port: 50051, protocol: "http:" },
      { kind: "dns", host: "::1", port: 7, protocol: "http:" },
    ]);
    expect(normalizePeer("https://Tasks:50051/, dns:///[::1]:7")).toBe("https://tasks:50051,dns:///[::1]:7");
    expect(targetUrl(parsePeer("dns:///[::1]:7", "https:")[0]!)).toBe("https://[::1]:7");
  });

  it.each([
    ["", /comma-separated list/],
    ["http://a:1,,http://b:2", /comma-separated list/],
    ["tasks:50051", /http: or https: URL/],
    ["dns://8.8.8.8/tasks:50051", /no DNS server authority/],
    ["dns:///tasks", /dns:\/\/\/<host>:<port>/],
    ["dns:///tasks:0", /port from 1 to 65535/],
    ["http://tasks:50051/api", /nothing after host and port/],
    ["redis://tasks:6379", /http: or https: URL/],
  ])("refuse %j", (value, message) => {
    expect(() => parsePeer(value, "https:")).toThrow(message);
  });
});

describe("outlier ejection", () => {
  it("ejects after outage results in a row, for base × times ejected up to the maximum", () => {
    const [endpoint] = records("http://a:1");
    let now = 0;
    const ejectAt = (at: number) => {
      now = at;
      expect(endpoint!.recordOutage(now)).toBeUndefined();
      expect(endpoint!.recordOutage(now)).toBeUndefined();
      return endpoint!.recordOutage(now);
    };
    expect(ejectAt(0)).toBe(1_000);
    expect(endpoint!.condition(999)).toBe("ejected");
    expect(endpoint!.eligible(999)).toBe(false);
    // Results of calls sent before the ejection do not extend it.
    expect(endpoint!.recordOutage(500)).toBeUndefined();
    expect(endpoint!.eligible(1_000)).toBe(true);
    expect(ejectAt(1_000)).toBe(2_000);
    expect(ejectAt(3_000)).toBe(3_000);
    expect(ejectAt(6_000)).toBe(3_500);
    expect(endpoint!.ejections).toBe(4);
  });

  it("starts over after a success; and at the base time once in for a whole maximum ejection", () => {
    const [endpoint] = records("http://a:1");
    endpoint!.recordOutage(0);
    endpoint!.recordOutage(0);
    endpoint!.recordSuccess(0);
    expect(endpoint!.recordOutage(0)).toBeUndefined();
    expect(endpoint!.recordOutage(0)).toBeUndefined();
    expect(endpoint!.recordOutage(0)).toBe(1_000);
    endpoint!.recordSuccess(1_000);
    expect(endpoint!.ejections).toBe(1);
    endpoint!.recordSuccess(1_000 + 3_500);
    expect(endpoint!.ejections).toBe(0);
  });

  it("returns an endpoint when its time is up and its health says serving, and notes the return once", () => {
    const [endpoint] = records("http://a:1");
    for (let i = 0; i < 3; i++) endpoint!.recordOutage(0);
    endpoint!.serving = false;
    expect(endpoint!.noteReturn(999)).toBe(false);
    expect(endpoint!.noteReturn(1_000)).toBe(true);
    expect(endpoint!.noteReturn(1_001)).toBe(false);
    expect(endpoint!.condition(1_000)).toBe("not_serving");
    expect(endpoint!.eligible(1_000)).toBe(false);
    endpoint!.serving = true;
    expect(endpoint!.condition(1_000)).toBe("serving");
  });

  it("refuses options that could never eject or never return", () => {
    expect(() => outlierOptions({ consecutiveFailures: 0 })).toThrow(/consecutiveFailures/);
    expect(() => outlierOptions({ baseEjectionMs: 5_000, maxEjectionMs: 1_000 })).toThrow(/baseEjectionMs/);
  });
});

describe("round robin", () => {
  it("takes the eligible endpoints in turn", () => {
    const endpoints = records("http://a:1", "http://b:1", "http://c:1");
    const picker = new RoundRobinPicker();
    expect(picks(picker, endpoints, 0, 6)).toEqual([
      "http://a:1",
      "http://b:1",
      "http://c:1",
      "http://a:1",
      "http://b:1",
      "http://c:1",
    ]);
    endpoints[1]!.serving = false;
    for (let i = 0; i < 3; i++) endpoints[2]!.recordOutage(0);
    expect(picks(picker, endpoints, 10, 3)).toEqual(["http://a:1", "http://a:1", "http://a:1"]);
    expect(picks(picker, endpoints, 1_000, 2).sort()).toEqual(["http://a:1", "http://c:1"]);
  });

  it("falls back to every endpoint when none is eligible (panic mode)", () => {
    const endpoints = records("http://a:1", "http://b:1");
    for (const endpoint of endpoints) endpoint.serving = false;
    const picker = new RoundRobinPicker();
    expect(picks(picker, endpoints, 0, 4)).toEqual(["http://a:1", "http://b:1", "http://a:1", "http://b:1"]);
    expect(picker.pick([], 0)).toBeUndefined();
  });
});
