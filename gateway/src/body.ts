import type { IncomingMessage } from "node:http";
import { WebhookRejection } from "./http-errors.js";

/**
 * The request body as raw bytes (signatures are over the bytes, never a re-serialization),
 * refusing with 413 as soon as it is known to exceed `limit`.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw tooLarge(limit);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof WebhookRejection) throw err;
    throw new WebhookRejection(400, "request body could not be read", (err as Error).message);
  }
  return Buffer.concat(chunks, size);
}

function tooLarge(limit: number) {
  return new WebhookRejection(413, `request body exceeds ${limit} bytes`);
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}
