import { userInfo } from "node:os";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { CreateSignInLinkResponseSchema, DashboardService } from "../../gen/hookmesh/dashboard/v1/dashboard_pb.js";
import type { Print } from "./args.js";
import { type CommandSpec, jsonOf, parseCommand, UsageError } from "./command.js";

export const DASHBOARD = {
  usage: "dashboard [--name NAME] [--json]",
  summary:
    "Prints a one-time URL that signs a browser in to the dashboard's web UI (DASHBOARD_URL, default\n" +
    "port 50070). It works once, for a few minutes; the session acts as the operator, and every\n" +
    "action it takes is recorded under NAME.",
  options: { name: { type: "string", short: "n" }, json: { type: "boolean" } },
  flags: {
    name: "who the session is for in the audit log (default: your login name)",
    json: "print the response as protobuf JSON (CreateSignInLinkResponse)",
  },
  example: "hookmesh dashboard --name ana",
} satisfies CommandSpec;

/** `hookmesh dashboard`: asks the dashboard, as the operator, for a sign-in link. */
export async function dashboardCommand(args: string[], dashboard: Transport, print: Print): Promise<void> {
  const parsed = parseCommand(DASHBOARD, args, print);
  if (!parsed) return;
  if (parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument "${parsed.positionals[0]}"; see hookmesh dashboard --help`);
  }
  const name = parsed.values.name ?? loginName();
  const res = await createClient(DashboardService, dashboard).createSignInLink({ name });
  if (parsed.values.json) return print(jsonOf(CreateSignInLinkResponseSchema, res));
  const expires = res.expireTime ? ` (once, until ${timestampDate(res.expireTime).toISOString()})` : "";
  print(`Open this link to sign in${expires}:\n${res.url}`);
}

function loginName(): string {
  try {
    return userInfo().username;
  } catch {
    return "";
  }
}
