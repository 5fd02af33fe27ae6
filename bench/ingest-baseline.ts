/**
 * The baseline of bench/ingest.ts, in a process of its own like the gateway: a minimal
 * node:http server doing what any webhook edge must, one HMAC-SHA256 check of the raw body
 * and one Redis XADD of it, then 202. It tells the parent its port over the IPC channel.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";

const secret = process.env.BENCH_SECRET ?? "bench-webhook-secret";
const stream = process.env.BENCH_BASELINE_STREAM ?? "hookmesh-bench:baseline";
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const given = Buffer.from(String(req.headers["x-hub-signature-256"] ?? ""));
    const expected = Buffer.from(`sha256=${createHmac("sha256", secret).update(body).digest("hex")}`);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"signature mismatch"}');
      return;
    }
    redis.xadd(stream, "*", "delivery", String(req.headers["x-github-delivery"]), "body", body).then(
      () => res.writeHead(202, { "content-type": "application/json" }).end('{"queued":true}'),
      () =>
        res.writeHead(503, { "content-type": "application/json", "retry-after": "5" }).end('{"error":"unavailable"}'),
    );
  });
});
server.listen(0, "127.0.0.1", () => process.send!({ port: (server.address() as AddressInfo).port }));
process.on("disconnect", () => {
  server.close();
  redis.disconnect();
  process.exit(0);
});
