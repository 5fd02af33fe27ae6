import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { peerKey } from "./auth/peer.js";
import type { Logger } from "./logger.js";

/** Turns a domain error into the ConnectError callers see, or returns undefined if it is not one. */
export type ErrorMapper = (err: unknown) => ConnectError | undefined;

/**
 * The one place where errors become wire errors. ConnectErrors pass through, domain errors
 * go through the service's mapper, and anything else becomes Internal with a generic message:
 * the cause stays on the error for the log line, never on the wire.
 */
export function toWireError(err: unknown, mapError?: ErrorMapper): ConnectError {
  if (err instanceof ConnectError) return err;
  const mapped = mapError?.(err);
  if (mapped) return mapped;
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

async function* mapStreamErrors<T>(
  messages: AsyncIterable<T>,
  onEnd: (err?: ConnectError) => void,
  mapError?: ErrorMapper,
): AsyncGenerator<T> {
  try {
    yield* messages;
    onEnd();
  } catch (err) {
    const wire = toWireError(err, mapError);
    onEnd(wire);
    throw wire;
  }
}

/**
 * Logs one line per call (method, code, duration, request id, and the caller's identity once
 * the server or the authorization interceptor knows it) and maps errors to the wire.
 * The request id is the caller's `x-request-id` or a new one, and is echoed back.
 */
export function serverCallInterceptor(logger: Logger, mapError?: ErrorMapper): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const requestId = req.header.get("x-request-id") ?? randomUUID();
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    let finished = false;
    const finish = (err?: ConnectError) => {
      if (finished) return;
      finished = true;
      const peer = req.contextValues.get(peerKey);
      const line = {
        procedure,
        code: err ? Code[err.code] : "OK",
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        requestId,
        ...(peer && { identity: peer.name }),
      };
      if (!err) logger.info(line, "rpc");
      else if (err.cause !== undefined && err.code === Code.Internal)
        logger.error({ ...line, err: err.cause }, "rpc failed");
      // A mapped outage (say, the store's connection failing) keeps its cause for operators.
      else
        logger.warn(
          { ...line, error: err.rawMessage, ...(err.cause !== undefined && { err: err.cause }) },
          "rpc error",
        );
    };
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (!res.stream) {
        finish();
        return res;
      }
      // A client that goes away mid-stream ends it with neither a last message nor an error.
      req.signal.addEventListener("abort", () => finish(new ConnectError("canceled by the client", Code.Canceled)), {
        once: true,
      });
      return { ...res, message: mapStreamErrors(res.message, finish, mapError) } satisfies StreamResponse;
    } catch (err) {
      const wire = toWireError(err, mapError);
      wire.metadata.set("x-request-id", requestId);
      finish(wire);
      throw wire;
    }
  };
}
