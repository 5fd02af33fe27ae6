export interface RetryBudgetOptions {
  /** Size of the token bucket; retries stop once half of it is spent. Default 10. */
  maxTokens?: number;
  /** Tokens each successful call gives back. Default 0.1. */
  tokenRatio?: number;
}

/**
 * gRPC retry throttling (gRFC A6): a token bucket per downstream that keeps retries from
 * multiplying the load on a server that is already failing. Every failed attempt takes a
 * token, every success gives back `tokenRatio`, and retries are allowed only while more
 * than half of the tokens remain. First attempts are never throttled.
 */
export interface RetryBudget {
  recordSuccess(): void;
  recordFailure(): void;
  allowsRetry(): boolean;
}

export function createRetryBudget({ maxTokens = 10, tokenRatio = 0.1 }: RetryBudgetOptions = {}): RetryBudget {
  // Counted in thousandths of a token, as gRPC does, so that adding 0.1 ten times is 1.
  const max = Math.round(maxTokens * 1000);
  const ratio = Math.round(tokenRatio * 1000);
  let tokens = max;
  return {
    recordSuccess() {
      tokens = Math.min(max, tokens + ratio);
    },
    recordFailure() {
      tokens = Math.max(0, tokens - 1000);
    },
    allowsRetry() {
      return tokens > max / 2;
    },
  };
}
