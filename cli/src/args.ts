import { UsageError } from "./command.js";

export type Print = (line: string) => void;

/** The value of a generated enum named on the command line, e.g. `dead` for TASK_STATE_DEAD. */
export function enumValue<E extends Record<string, string | number>>(
  values: E,
  prefix: string,
  name: string,
  flag: string,
): number {
  const key = name.toUpperCase().replace(new RegExp(`^${prefix}`), "");
  const value = values[key];
  if (typeof value !== "number") {
    const known = Object.keys(values).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED");
    throw new UsageError(`${flag}: unknown value "${name}"; one of ${known.map((k) => k.toLowerCase()).join(", ")}`);
  }
  return value;
}

export function required(value: string | undefined, what: string): string {
  if (!value) throw new UsageError(`missing ${what}`);
  return value;
}
