import { setTimeout as sleep } from "node:timers/promises";
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../logger.js";
import type { RpcMetrics } from "../metrics/rpc.js";
import { rejectedByBreaker } from "./breaker.js";
import { failedBeforeSending, isRetryableCode } from "./codes.js";
import { deadlineFromHeader, headerWithTimeout } from "./deadline.js";
import type { RetryBudget } from "./retry-budget.js";

export interface RetryOptions {
  /** Attempts per call, the first included; 1 turns retries off. Default 3. */
  maxAttempts?: number;
  /** Upper bound of the first retry's random delay; it doubles for every further retry. Default 100ms. */
  baseDelayMs?: number;
  /** Upper bound of any delay. Default 2s. */
  maxDelayMs?: number;
}

/**
 * Retries unary calls that failed with Unavailable or ResourceExhausted, after a random
 * delay between zero and an exponentially growing cap ("full jitter", so that callers
 * that failed together do not come back together). A call is retried only if that is
 * safe: the method is declared idempotent or free of side effects in its proto, or the
 * request never left this process. Retries stop when the budget is spent, and never run
 * past the caller's deadline: each attempt is sent with the time that is left.
 */
export function retryInterceptor(
  options: RetryOptions,
  budget: RetryBudget,
  logger: Logger,
  /** Where retries and retries refused by the budget are counted, under the downstream's label. */
  observed?: { metrics: RpcMetrics; downstream: string },
): Interceptor {
  const { maxAttempts = 3, baseDelayMs = 100, maxDelayMs = 2000 } = options;
  return (next) => async (req) => {
    // The request messages of a stream are an iterable that the first attempt consumes.
    if (req.stream) return next(req);
    const deadline = deadlineFromHeader(req.header);
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await next(
          deadline === undefined ? req : { ...req, header: headerWithTimeout(req.header, deadline - Date.now()) },
        );
        budget.recordSuccess();
        return res;
      } catch (e) {
        const err = ConnectError.from(e);
        const neverSent = failedBeforeSending(err);
        // A fast-fail from an open circuit tells nothing new about the downstream.
        if (rejectedByBreaker(err) || !(neverSent || isRetryableCode(err))) throw err;
        budget.recordFailure();
        const delayMs = Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
        const retryable =
          attempt < maxAttempts &&
          (neverSent || isIdempotent(req.method)) &&
          (deadline === undefined || Date.now() + delayMs < deadline);
        if (!retryable) throw err;
        if (!budget.allowsRetry()) {
          observed?.metrics.retryBudgetExhausted.inc({ downstream: observed.downstream });
          throw err;
        }
        observed?.metrics.retries.inc({
          downstream: observed.downstream,
          rpc_service: req.service.typeName,
          rpc_method: req.method.name,
          code: Code[err.code],
        });
        const procedure = `/${req.service.typeName}/${req.method.name}`;
        logger.debug({ procedure, attempt, code: Code[err.code], delayMs: Math.round(delayMs) }, "retrying call");
        // Rejects as soon as the caller cancels or the deadline passes; the transport then
        // reports the signal's reason (Canceled or DeadlineExceeded) instead of this error.
        await sleep(delayMs, undefined, { signal: req.signal });
      }
    }
  };
}

function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT ||
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS
  );
}
