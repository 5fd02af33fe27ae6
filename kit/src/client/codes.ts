import { Code, type ConnectError } from "@connectrpc/connect";

/**
 * Codes that say the downstream is failing, as opposed to the caller having asked for
 * something it cannot have. Only these count against a circuit breaker: a burst of
 * NotFound is a healthy server answering bad questions.
 */
const outageCodes: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Internal,
  Code.Unknown,
  Code.DataLoss,
]);

/**
 * Codes for which another attempt may succeed: the downstream could not take the call
 * right now. DeadlineExceeded is not among them, because the caller's time is spent.
 */
const retryableCodes: ReadonlySet<Code> = new Set([Code.Unavailable, Code.ResourceExhausted]);

/**
 * System calls that fail before a connection exists (ECONNREFUSED, EHOSTUNREACH and
 * ETIMEDOUT from connect, ENOTFOUND and EAI_AGAIN from getaddrinfo). A call that failed
 * in one of them never reached the server. Errors from reads and writes (ECONNRESET)
 * are not among them: the server may have received the request.
 */
const preConnectSyscalls: ReadonlySet<string> = new Set(["connect", "getaddrinfo"]);

/**
 * HTTP/2's "the server closed this stream before any processing" (RFC 9113, 8.7): what a client
 * gets for a call it sent just as the server sent GOAWAY to the idle connection.
 */
const REFUSED_STREAM = "NGHTTP2_REFUSED_STREAM";

export function isOutage(err: ConnectError): boolean {
  return outageCodes.has(err.code);
}

export function isRetryableCode(err: ConnectError): boolean {
  return retryableCodes.has(err.code);
}

/**
 * True if the cause chain shows that the request was never sent, or that the server refused its
 * stream unprocessed, so any method may be retried.
 */
export function failedBeforeSending(err: ConnectError): boolean {
  const seen = new Set<unknown>();
  for (let cause: unknown = err.cause; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    if ("syscall" in cause && typeof cause.syscall === "string" && preConnectSyscalls.has(cause.syscall)) {
      return true;
    }
    // Node names the stream's reset code only in the message of ERR_HTTP2_STREAM_ERROR.
    if ("code" in cause && cause.code === "ERR_HTTP2_STREAM_ERROR" && cause.message.includes(REFUSED_STREAM)) {
      return true;
    }
  }
  return false;
}
