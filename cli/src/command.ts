import { type ParseArgsConfig, parseArgs } from "node:util";
import { type DescMessage, type MessageShape, toJsonString } from "@bufbuild/protobuf";
import { type Print, required } from "./args.js";

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig["options"]>;

/** A mistake on the command line (unknown flag, missing argument): exit 2, unlike a failed call (exit 1). */
export class UsageError extends Error {
  override name = "UsageError";
}

/** What `--help` says about a command, and the flags it accepts (anything else is refused). */
export interface CommandSpec<O extends ParseArgsOptionsConfig = ParseArgsOptionsConfig> {
  /** e.g. `tasks list [--state S]`, without the leading `hookmesh`. */
  usage: string;
  summary: string;
  options: O;
  /** One line per flag, keyed by the flag's name. */
  flags: { [K in keyof O]: string };
  example: string;
}

type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>
>;

export function commandHelp(spec: CommandSpec): string {
  const flags = Object.entries(spec.flags).map(([name, text]) => {
    const option = spec.options[name]!;
    const short = option.short ? `-${option.short}, ` : "";
    return `  ${short}--${name}${option.type === "string" ? " VALUE" : ""}`.padEnd(26) + text;
  });
  return [
    `usage: hookmesh ${spec.usage}`,
    "",
    spec.summary,
    ...(flags.length ? ["", "flags:", ...flags] : []),
    "",
    "example:",
    `  ${spec.example}`,
  ].join("\n");
}

/** The command's flags and arguments; undefined when `--help` asked for (and got) its help instead. */
export function parseCommand<O extends ParseArgsOptionsConfig>(
  spec: CommandSpec<O>,
  args: string[],
  print: Print,
): Parsed<O> | undefined {
  if (args.includes("--help") || args.includes("-h")) {
    print(commandHelp(spec));
    return undefined;
  }
  try {
    return parseArgs({ args, options: spec.options, allowPositionals: true, strict: true });
  } catch (err) {
    // node's message names the flag, then explains `--`; the first sentence is what a person needs.
    const [reason] = (err as Error).message.split(/\.\s/, 1);
    throw new UsageError(`${reason}; see hookmesh ${commandName(spec)} --help`);
  }
}

/** The command's words in its usage, e.g. `tasks list` of `tasks list [--state S]`. */
function commandName(spec: CommandSpec): string {
  const words = spec.usage.split(" ");
  const end = words.findIndex((word) => !/^[a-z-]+$/.test(word));
  return words.slice(0, end === -1 ? words.length : end).join(" ");
}

export interface Subcommand {
  spec: CommandSpec;
  run(args: string[]): Promise<void>;
}

/** A message as every `--json` prints it: protobuf's JSON form (the proto's field names), indented. */
export function jsonOf<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): string {
  return toJsonString(schema, message, { prettySpaces: 2 });
}

/** What `getSubcommand` reads: one resource by id, and where it sits in the response. */
export interface GetOne<Res extends DescMessage, Item extends DescMessage> {
  spec: CommandSpec;
  /** How the id is named when it is missing, e.g. `task id`. */
  what: string;
  fetch(id: string): Promise<MessageShape<Res>>;
  response: Res;
  item: Item;
  itemOf(res: MessageShape<Res>): MessageShape<Item>;
}

/** `hookmesh GROUP get ID`: the resource as JSON, or with `--json` the whole response. */
export function getSubcommand<Res extends DescMessage, Item extends DescMessage>(
  get: GetOne<Res, Item>,
  print: Print,
): Subcommand {
  return {
    spec: get.spec,
    async run(args) {
      const parsed = parseCommand(get.spec, args, print);
      if (!parsed) return;
      const res = await get.fetch(required(parsed.positionals[0], get.what));
      print(parsed.values.json ? jsonOf(get.response, res) : jsonOf(get.item, get.itemOf(res)));
    },
  };
}

/** Runs `hookmesh GROUP SUB ...`, or prints the group's commands for `--help`. */
export async function runGroup(
  group: string,
  summary: string,
  subcommands: Record<string, Subcommand>,
  args: string[],
  print: Print,
): Promise<void> {
  const [sub, ...rest] = args;
  const help = () =>
    [
      `usage: hookmesh ${group} <command>`,
      "",
      summary,
      "",
      "commands:",
      // An alias (tasks show = tasks get) shares its spec: listed once.
      ...[...new Set(Object.values(subcommands).map((s) => s.spec))].flatMap((spec) => [
        `  ${spec.usage}`,
        `      ${spec.summary.split("\n", 1)[0]}`,
      ]),
      "",
      `hookmesh ${group} <command> --help describes one.`,
    ].join("\n");
  if (sub === "--help" || sub === "-h" || sub === "help") return print(help());
  const command = sub === undefined ? undefined : subcommands[sub];
  if (!command) throw new UsageError(`unknown ${group} command "${sub ?? ""}"\n\n${help()}`);
  return command.run(rest);
}

/** The flags every list command takes. */
/** The flag of every command that prints data: `--json`. */
export const JSON_FLAG = { json: { type: "boolean" } } as const;

export const PAGING_OPTIONS = {
  "page-size": { type: "string" },
  "page-token": { type: "string" },
  all: { type: "boolean" },
  ...JSON_FLAG,
} as const;

export const PAGING_FLAGS = {
  "page-size": "how many per page (the service caps it)",
  "page-token": "the page to start at, as the previous page printed",
  all: "follow every page to the end",
  json: "print the response as protobuf JSON (with --all: every page's items in one document)",
} as const;

export interface Paging {
  pageSize: number;
  pageToken: string;
  all: boolean;
}

export function paging(values: { "page-size"?: string; "page-token"?: string; all?: boolean }, pageSize = 20): Paging {
  const size = values["page-size"] === undefined ? pageSize : Number(values["page-size"]);
  if (!Number.isInteger(size) || size < 1)
    throw new UsageError(`--page-size: "${values["page-size"]}" is not a positive whole number`);
  return { pageSize: size, pageToken: values["page-token"] ?? "", all: values.all ?? false };
}

/** The pages from `paging.pageToken` on: one, or with `all` each until the last. */
export async function* pages<R extends { nextPageToken: string }>(
  { pageToken, all }: Paging,
  fetch: (pageToken: string) => Promise<R>,
): AsyncGenerator<R> {
  let token = pageToken;
  do {
    const page = await fetch(token);
    yield page;
    token = page.nextPageToken;
  } while (all && token !== "");
}

/** The text-mode last line after a page that is not the last: the same command, at the next page. */
export function nextPageHint(command: string, args: readonly string[], nextPageToken: string): string {
  const kept = args.filter((arg, i) => !arg.startsWith("--page-token") && args[i - 1] !== "--page-token");
  return `next page: hookmesh ${[command, ...kept].join(" ")} --page-token ${nextPageToken}`;
}
