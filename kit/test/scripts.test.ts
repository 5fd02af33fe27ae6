import { createHash } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runScript, runScriptBuffer } from "../src/redis.js";
import { type TestRedis, testRedis } from "../src/testing/redis.js";

describe("runScript", () => {
  let db: TestRedis;
  beforeEach(async () => {
    db = await testRedis("kit-scripts");
  });
  afterEach(() => db.cleanup());

  /** A script this Redis has never seen: its text names the test's own prefix. */
  const newScript = (body: string) => `-- ${db.prefix}\n${body}`;
  const sha = (script: string) => createHash("sha1").update(script).digest("hex");

  it("sends a script Redis does not have yet once, then runs it by its SHA-1", async () => {
    const script = newScript("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    const key = `${db.prefix}counter`;
    expect(await db.redis.script("EXISTS", sha(script))).toEqual([0]);

    expect(await runScript(db.redis, script, [key], [2])).toBe(2);
    expect(await db.redis.script("EXISTS", sha(script))).toEqual([1]);
    expect(await runScript(db.redis, script, [key], [3])).toBe(5);
  });

  it("keeps a script's own error, not the NOSCRIPT it recovered from", async () => {
    const script = newScript("return redis.error_reply('ERR refused by the script')");
    await expect(runScript(db.redis, script, [], [])).rejects.toThrow("refused by the script");
  });

  it("returns bytes as Buffers with runScriptBuffer, unchanged whatever they hold", async () => {
    const script = newScript("return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}");
    const bytes = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0xc3]);
    await db.redis.set(`${db.prefix}record`, bytes);

    const keys = [`${db.prefix}record`, `${db.prefix}none`];
    // The first call sends the text, the second runs it by its SHA-1: both replies carry Buffers.
    for (let call = 0; call < 2; call++) {
      const [record, none] = (await runScriptBuffer(db.redis, script, keys, [])) as [Buffer, null];
      expect(Buffer.isBuffer(record)).toBe(true);
      expect(record.equals(bytes)).toBe(true);
      expect(none).toBeNull();
    }
  });
});
