import { appendFileSync, chmodSync } from "node:fs";
import {
  createOperatorToken,
  type DevIdentities,
  type Env,
  ensureDevIdentities,
  envHome,
  envTrustDomain,
} from "@hookmesh/kit";
import type { Print } from "./args.js";
import { type CommandSpec, parseCommand, UsageError } from "./command.js";
import { SERVICES } from "./services.js";

/** One identity per service, the dashboard's (it is planned and already named in the contracts) and the operator's. */
export const IDENTITY_NAMES: readonly string[] = [...SERVICES.map((s) => s.name), "dashboard", "operator"];

/**
 * The development CA and identities under `HOOKMESH_HOME` (default `.hookmesh`), in
 * `HOOKMESH_TRUST_DOMAIN` (default `hookmesh.local`): made when missing, renewed when near
 * expiry, otherwise left alone. `npm start` runs this before the services.
 */
export function devIdentities(env: Env, options: { renew?: boolean } = {}): Promise<DevIdentities> {
  return ensureDevIdentities({
    home: envHome(env),
    trustDomain: envTrustDomain(env),
    names: IDENTITY_NAMES,
    ...(options.renew && { reissue: true }),
  });
}

const CERTS = {
  usage: "certs [--renew]",
  summary: "Makes (or renews) the development CA and the services' identities under HOOKMESH_HOME.",
  options: { renew: { type: "boolean", default: false } },
  flags: { renew: "issue every identity again, even those far from expiry" },
  example: "hookmesh certs --renew",
} satisfies CommandSpec;

const TOKEN = {
  usage: "token create NAME [--file FILE]",
  summary: "A bearer token for NAME (e.g. operator), printed once; its hash is stored in FILE.",
  options: { file: { type: "string" } },
  flags: { file: "where the hash goes (default HOOKMESH_OPERATOR_TOKENS_FILE)" },
  example: "hookmesh token create ci --file ~/.hookmesh/operator-tokens",
} satisfies CommandSpec;

/** `hookmesh certs [--renew]`: makes (or renews) the development identities and says where they are. */
export async function certsCommand(args: string[], env: Env, print: Print): Promise<void> {
  const parsed = parseCommand(CERTS, args, print);
  if (!parsed) return;
  const { values } = parsed;
  const made = await devIdentities(env, { renew: values.renew });
  print(`ca        ${made.caFile}  ${made.caStatus}`);
  for (const identity of made.identities) {
    print(
      `${identity.name.padEnd(9)} ${identity.certFile}  ${identity.status}, ${identity.id}, until ${identity.notAfter.toISOString().slice(0, 10)}`,
    );
  }
}

/**
 * `hookmesh token create NAME [--file FILE]`: a new bearer token for NAME (e.g. `operator`),
 * printed once; the line that stores its hash goes to FILE (default `HOOKMESH_OPERATOR_TOKENS_FILE`),
 * or is printed when there is neither. Services read the file at start.
 */
export function tokenCommand(args: string[], env: Env, print: Print, note: Print): void {
  const parsed = parseCommand(TOKEN, args, print);
  if (!parsed) return;
  const { values, positionals } = parsed;
  const [sub, name] = positionals;
  if (sub !== "create" || !name || positionals.length > 2)
    throw new UsageError("usage: hookmesh token create NAME [--file FILE]");
  const { token, line } = createOperatorToken(name);
  const file = values.file ?? env.HOOKMESH_OPERATOR_TOKENS_FILE?.trim();
  if (file) {
    appendFileSync(file, `${line}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    note(`# stored its hash in ${file}; restart the services to accept it`);
  } else {
    note(`# add this line to the file HOOKMESH_OPERATOR_TOKENS_FILE names:\n${line}`);
  }
  note("# the token (shown once; use it as HOOKMESH_TOKEN or an Authorization: Bearer header):");
  print(token);
}
