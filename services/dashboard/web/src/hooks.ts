import { type DependencyList, useCallback, useEffect, useState } from "react";
import { errorMessage } from "./api.js";

export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  loading: boolean;
  /** Loads again, keeping what is shown until the answer comes. */
  reload: () => void;
}

/**
 * Calls `load` when `deps` change (and on `reload`), aborting the call in flight when they change
 * again or the page goes away, so a slow answer never overwrites a newer one.
 */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: DependencyList): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  // biome-ignore lint/correctness/useExhaustiveDependencies: the caller's deps say when to load again
  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    load(controller.signal).then(
      (value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setError(undefined);
        setLoading(false);
      },
      (reason: unknown) => {
        if (controller.signal.aborted) return;
        setError(errorMessage(reason));
        setLoading(false);
      },
    );
    return () => controller.abort();
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  return { data, error, loading, reload };
}

/** Calls `reload` every `ms` while the page is open. */
export function useEvery(ms: number, reload: () => void): void {
  useEffect(() => {
    const timer = setInterval(reload, ms);
    return () => clearInterval(timer);
  }, [ms, reload]);
}

export interface Action {
  run: (action: () => Promise<unknown>, done?: string) => Promise<void>;
  busy: boolean;
  error: string | undefined;
  message: string | undefined;
}

/** One button's call: busy while it runs, then its error or a message saying it was done. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [message, setMessage] = useState<string>();
  const run = useCallback(async (action: () => Promise<unknown>, done?: string) => {
    setBusy(true);
    setError(undefined);
    setMessage(undefined);
    try {
      await action();
      setMessage(done);
    } catch (reason) {
      setError(errorMessage(reason));
    } finally {
      setBusy(false);
    }
  }, []);
  return { run, busy, error, message };
}

export interface Pages {
  /** The token of the page shown ("" for the first). */
  token: string;
  hasPrevious: boolean;
  next: (token: string) => void;
  previous: () => void;
  /** Back to the first page, e.g. when the filters change. */
  reset: () => void;
}

/** Page tokens only lead forward, so the tokens of the pages before this one are kept to go back. */
export function usePages(): Pages {
  const [tokens, setTokens] = useState<string[]>([""]);
  return {
    token: tokens.at(-1)!,
    hasPrevious: tokens.length > 1,
    next: (token) => setTokens((stack) => [...stack, token]),
    previous: () => setTokens((stack) => (stack.length > 1 ? stack.slice(0, -1) : stack)),
    reset: () => setTokens([""]),
  };
}
