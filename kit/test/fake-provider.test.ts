import { afterEach, describe, expect, it } from "vitest";
import { FakeProvider, type ReceivedRequest, type Reply } from "../src/testing/index.js";

/** A provider whose own behaviour is to echo the request's path. */
class EchoProvider extends FakeProvider {
  constructor() {
    super("/api");
  }

  protected respond(req: ReceivedRequest): Reply {
    return { status: 200, body: { path: req.path } };
  }

  protected override headers(): Record<string, string> {
    return { "x-rate-limit-remaining": "9" };
  }
}

describe("FakeProvider", () => {
  let fake: EchoProvider;
  afterEach(async () => fake?.close());

  it("listens on port 0 under its base path and records requests, parsed and as sent", async () => {
    fake = await EchoProvider.start();
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api$/);
    const res = await fetch(`${fake.url}/things?x=1`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"a":1}',
    });
    expect(await res.json()).toEqual({ path: "/things" });
    expect(res.headers.get("x-rate-limit-remaining")).toBe("9");
    expect(fake.received).toEqual([
      {
        method: "POST",
        path: "/things",
        rawPath: "/api/things",
        query: "?x=1",
        headers: expect.objectContaining({ "content-type": "application/json" }),
        text: '{"a":1}',
        body: { a: 1 },
        at: expect.any(Number),
      },
    ]);
  });

  it("answers from scripts first, in order, for any request or one `METHOD path`, then as the provider", async () => {
    fake = await EchoProvider.start();
    fake.answerTo("GET /b", { status: 503, headers: { "retry-after": "1" } });
    fake.answer({ status: 201, body: "created" });
    fake.answerTo(/^GET \/c/, () => undefined);
    const a = await fetch(`${fake.url}/a`);
    const b = await fetch(`${fake.url}/b`);
    const c = await fetch(`${fake.url}/c`);
    expect([a.status, a.headers.get("content-type"), await a.text()]).toEqual([
      201,
      "text/plain; charset=utf-8",
      "created",
    ]);
    expect([b.status, b.headers.get("retry-after"), b.headers.get("x-rate-limit-remaining")]).toEqual([503, "1", "9"]);
    // A function that answers undefined leaves the request to the provider.
    expect(await c.json()).toEqual({ path: "/c" });
  });

  it("leaves a request unanswered until it closes, and forgets requests and scripts on reset", async () => {
    fake = await EchoProvider.start();
    fake.answer("hang");
    const hanging = fetch(`${fake.url}/slow`).then(
      () => "answered",
      () => "cut",
    );
    await expect.poll(() => fake.received.length).toBe(1);
    fake.answer({ status: 500 });
    fake.reset();
    expect(fake.received).toEqual([]);
    expect((await fetch(`${fake.url}/d`)).status).toBe(200);
    await fake.close();
    expect(await hanging).toBe("cut");
  });
});
