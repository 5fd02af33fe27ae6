import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { WebhookRejection } from "./http-errors.js";

/** A request body as read: its bytes, and their SHA-256 computed as they arrived. */
export interface ReadBody {
  bytes: Buffer;
  /** Hex. */
  sha256: string;
}

/**
 * What has been read of a body so far: its size, and its digest once complete. Kept by the
 * caller, so that a refusal (413 while the body arrives, 401 after) can still record both.
 */
export interface BodyProgress {
  size: number;
  sha256: string;
}

/**
 * The request body as raw bytes (signatures are over the bytes, never a re-serialization),
 * hashed chunk by chunk as it arrives, refusing with 413 as soon as it is known to exceed
 * `limit`: by its Content-Length before a byte is read, or by the bytes streamed so far,
 * before the chunk over the limit is buffered.
 */
export async function readBody(req: IncomingMessage, limit: number, progress: BodyProgress): Promise<ReadBody> {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) throw tooLarge(limit);
  const hash = createHash("sha256");
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      progress.size += chunk.length;
      if (progress.size > limit) throw tooLarge(limit);
      hash.update(chunk);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof WebhookRejection) throw err;
    throw new WebhookRejection(400, "request body could not be read", (err as Error).message);
  }
  progress.sha256 = hash.digest("hex");
  return { bytes: Buffer.concat(chunks, progress.size), sha256: progress.sha256 };
}

function tooLarge(limit: number) {
  return new WebhookRejection(413, `request body exceeds ${limit} bytes`);
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}
