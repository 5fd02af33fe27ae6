import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { ConfigError, type Env, envString, readConfigFile } from "../config.js";

/**
 * Identity names, as the contracts' `hookmesh.auth.v1.access` option and SPIFFE id paths
 * spell them: lowercase, so that `Operator` in a token file cannot silently match nothing.
 */
const IDENTITY_NAME = /^[a-z][a-z0-9-]*$/;

const TOKEN_LINE = /^([^:]+):sha256:([0-9a-f]{64})$/i;

/** Where operator tokens are stored, hashed. */
export const OPERATOR_TOKENS_VARIABLE = "HOOKMESH_OPERATOR_TOKENS_FILE";

interface StoredToken {
  name: string;
  hash: Buffer;
}

/**
 * Bearer tokens for callers that cannot present a client certificate (the dashboard's browser
 * sessions, scripts), each mapped to an identity name.
 *
 * Only SHA-256 hashes are kept. Tokens are 32 random bytes, so a hash cannot be reversed by
 * guessing, and a slow hash such as scrypt, which exists to protect guessable passwords, would
 * add nothing but a CPU cost on every call.
 */
export class OperatorTokens {
  private constructor(private readonly stored: readonly StoredToken[]) {}

  /** No tokens: every bearer token is refused. */
  static none(): OperatorTokens {
    return new OperatorTokens([]);
  }

  /**
   * Reads the token file format: one `name:sha256:<64 hex digits>` per line (what
   * `createOperatorToken` returns); blank lines and lines starting with `#` are ignored. A name
   * may have several tokens, so a new one can be added before the old one is removed. Errors
   * name the line by number only: a raw token pasted by mistake must not reach a log.
   */
  static parse(text: string): OperatorTokens {
    const stored: StoredToken[] = [];
    const owners = new Map<string, string>();
    text.split(/\r?\n/).forEach((raw, index) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const where = `line ${index + 1}`;
      const match = TOKEN_LINE.exec(line);
      if (!match) throw new Error(`${where}: expected name:sha256:<64 hex digits>`);
      const name = match[1]!;
      const hash = match[2]!.toLowerCase();
      if (!IDENTITY_NAME.test(name))
        throw new Error(`${where}: the identity name must be lowercase letters, digits and dashes`);
      const owner = owners.get(hash);
      if (owner !== undefined) throw new Error(`${where}: the same token is already stored for "${owner}"`);
      owners.set(hash, name);
      stored.push({ name, hash: Buffer.from(hash, "hex") });
    });
    return new OperatorTokens(stored);
  }

  get size(): number {
    return this.stored.length;
  }

  /**
   * The identity name `token` is stored under, or undefined. The presented token's hash is
   * compared with every stored hash in constant time, without stopping at a match, so timing
   * tells a caller nothing about the stored tokens.
   */
  identify(token: string): string | undefined {
    const presented = sha256(token);
    let name: string | undefined;
    for (const entry of this.stored) {
      if (timingSafeEqual(entry.hash, presented)) name ??= entry.name;
    }
    return name;
  }
}

/**
 * A new token for `name`: 32 random bytes, base64url. `token` goes to the caller, once, and is
 * kept nowhere; `line` is what to append to the token file.
 */
export function createOperatorToken(name: string): { token: string; line: string } {
  if (!IDENTITY_NAME.test(name))
    throw new Error(`identity name "${name}" must be lowercase letters, digits and dashes`);
  const token = randomBytes(32).toString("base64url");
  return { token, line: `${name}:sha256:${sha256(token).toString("hex")}` };
}

/**
 * The tokens in the file named by `HOOKMESH_OPERATOR_TOKENS_FILE`, checked at start; none when
 * the variable is unset, and then only client certificates identify callers.
 */
export function envOperatorTokens(env: Env, variable = OPERATOR_TOKENS_VARIABLE): OperatorTokens {
  const path = envString(env, variable, "");
  if (path === "") return OperatorTokens.none();
  try {
    return OperatorTokens.parse(readConfigFile(variable, path));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(variable, `${path}, ${(err as Error).message}`);
  }
}

function sha256(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}
