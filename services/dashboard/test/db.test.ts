import { freePort } from "@hookmesh/kit/testing";
import { describe, expect, it } from "vitest";
import { isDatabaseUnavailable, openDatabase } from "../src/db.js";

describe("the database", () => {
  it("tells an unreachable server from a failed query", async () => {
    const port = await freePort();
    const refused = await openDatabase({ kind: "postgres", url: `postgresql://postgres@127.0.0.1:${port}/test` }).catch(
      (err: unknown) => err,
    );
    expect(isDatabaseUnavailable(refused)).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error("terminating connection"), { code: "57P01" }))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('relation "x" does not exist'), { code: "42P01" }))).toBe(
      false,
    );
    expect(isDatabaseUnavailable(new Error("boom"))).toBe(false);
  });

  it("refuses a schema name that is not an identifier", async () => {
    await expect(
      openDatabase({ kind: "postgres", url: "postgresql://postgres@127.0.0.1:5432/test" }, { schema: "x; DROP" }),
    ).rejects.toThrow(/invalid schema name/);
  });
});
