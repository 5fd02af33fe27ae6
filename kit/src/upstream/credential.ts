import { readFileSync, unwatchFile, watchFile } from "node:fs";
import type { Env } from "../config.js";
import type { Logger } from "../logger.js";

/** A credential the service needs is not configured; `variable` names what to set. */
export class MissingCredentialError extends Error {
  override name = "MissingCredentialError";
  constructor(readonly variable: string) {
    super(`${variable} is not set`);
  }
}

/**
 * A secret from `NAME`, or from the file named by `NAME_FILE`, re-read when that file changes
 * or the process gets SIGHUP, so that rotating a token needs no restart. The value is never
 * logged nor put in an error.
 */
export class Credential {
  private value: string | undefined;
  private readonly file: string | undefined;

  constructor(
    readonly variable: string,
    env: Env,
    private readonly logger?: Logger,
  ) {
    this.file = env[`${variable}_FILE`]?.trim() || undefined;
    this.value = this.file === undefined ? env[variable]?.trim() || undefined : this.readFile();
  }

  /** The current value, or undefined when it is not configured. */
  get(): string | undefined {
    return this.value;
  }

  /** The current value; throws MissingCredentialError naming the variable when there is none. */
  require(): string {
    if (this.value === undefined) throw new MissingCredentialError(this.variable);
    return this.value;
  }

  get configured(): boolean {
    return this.value !== undefined;
  }

  /** The error that names the variable to set while there is no value; undefined once there is one. */
  missing(): MissingCredentialError | undefined {
    return this.value === undefined ? new MissingCredentialError(this.variable) : undefined;
  }

  /** Starts re-reading the file on change and on SIGHUP; returns the function that stops it. */
  watch(): () => void {
    if (this.file === undefined) return () => {};
    const file = this.file;
    const reload = () => {
      const next = this.readFile();
      if (next === this.value) return;
      this.value = next;
      this.logger?.info({ variable: `${this.variable}_FILE` }, "credential reloaded");
    };
    watchFile(file, { interval: 1_000 }, reload);
    process.on("SIGHUP", reload);
    return () => {
      unwatchFile(file, reload);
      process.off("SIGHUP", reload);
    };
  }

  private readFile(): string | undefined {
    try {
      return readFileSync(this.file!, "utf8").trim() || undefined;
    } catch (err) {
      this.logger?.warn(
        { variable: `${this.variable}_FILE`, code: (err as NodeJS.ErrnoException).code },
        "cannot read credential file",
      );
      return undefined;
    }
  }
}
