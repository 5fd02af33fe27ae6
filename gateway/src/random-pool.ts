import { randomFillSync } from "node:crypto";

/**
 * Cryptographically random bytes handed out from a pool refilled 4 KB at a time: the webhook
 * path needs a few dozen random bytes per request (ids, trace ids), and a call into the CSPRNG
 * for each costs more than the bytes themselves. The bytes handed out are never handed out
 * again; a caller that keeps them past the next refill must copy them (`hex` does).
 */
export class RandomPool {
  private readonly pool = Buffer.alloc(4096);
  private at = this.pool.length;

  /** `n` (at most 4,096) random bytes, valid until the pool is refilled. */
  bytes(n: number): Uint8Array {
    if (this.at + n > this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    this.at += n;
    return this.pool.subarray(this.at - n, this.at);
  }

  /** `n` random bytes as lowercase hex. */
  hex(n: number): string {
    const bytes = this.bytes(n);
    return Buffer.from(bytes.buffer, bytes.byteOffset, n).toString("hex");
  }
}
