/** One sample line of the Prometheus text format. */
export interface Sample {
  /** The sample's own name: a histogram's are `<family>_bucket`, `_sum` and `_count`. */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
/** The sample names each type of family may have beside its own. */
const SUFFIXES: Record<MetricFamily["type"], string[]> = {
  counter: [""],
  gauge: [""],
  untyped: [""],
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["", "_sum", "_count"],
};

/**
 * Parses a `/metrics` answer as the Prometheus text exposition format (version 0.0.4), strictly:
 * every sample belongs to a family its `# TYPE` line declared before it, with a name that type
 * allows; names and label names are valid; label values are quoted with only `\\`, `\"` and `\n`
 * escaped; values are floats (`NaN`, `+Inf`, `-Inf` included); no family is declared twice and
 * no sample appears twice; a histogram's buckets carry `le` and its `+Inf` bucket equals its count.
 * Throws, naming the line, on anything else.
 */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const seen = new Set<string>();
  const helps = new Map<string, string>();
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    const fail = (why: string): never => {
      throw new Error(`line ${index + 1}: ${why}: ${line}`);
    };
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const [, keyword, name, ...rest] = line.split(" ");
      if (keyword === "HELP") {
        if (!name || !NAME.test(name)) fail("invalid metric name");
        helps.set(name!, rest.join(" "));
      } else if (keyword === "TYPE") {
        if (!name || !NAME.test(name)) fail("invalid metric name");
        if (families.has(name!)) fail("family declared twice");
        const type = rest.join(" ");
        if (!TYPES.has(type)) fail("unknown type");
        families.set(name!, {
          name: name!,
          help: helps.get(name!) ?? "",
          type: type as MetricFamily["type"],
          samples: [],
        });
      }
      return;
    }
    const sample = parseSample(line, fail);
    const family = familyOf(families, sample.name);
    if (!family) fail("sample of no declared family");
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) fail("sample appears twice");
    seen.add(key);
    if (sample.name.endsWith("_bucket") && family!.type === "histogram" && sample.labels.le === undefined) {
      fail("histogram bucket without le");
    }
    family!.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

function familyOf(families: Map<string, MetricFamily>, sampleName: string): MetricFamily | undefined {
  for (const family of families.values()) {
    if (SUFFIXES[family.type].some((suffix) => family.name + suffix === sampleName)) return family;
  }
  return undefined;
}

function parseSample(line: string, fail: (why: string) => never): Sample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+-?\d+)?$/.exec(line);
  if (!match) fail("not a sample line");
  const [, name, labelText, valueText] = match!;
  const labels: Record<string, string> = {};
  if (labelText) {
    const body = labelText.slice(1, -1);
    const pair = /\s*([^=\s]+)="((?:[^"\\]|\\[\\"n])*)"\s*(,|$)/y;
    for (let at = 0; at < body.length; ) {
      pair.lastIndex = at;
      const found = pair.exec(body);
      if (!found) fail("malformed labels");
      const [, labelName, raw] = found!;
      if (!LABEL_NAME.test(labelName!)) fail(`invalid label name ${labelName}`);
      if (Object.hasOwn(labels, labelName!)) fail(`label ${labelName} twice`);
      labels[labelName!] = raw!.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
      at = pair.lastIndex;
    }
  }
  return { name: name!, labels, value: parseValue(valueText!, fail) };
}

function parseValue(text: string, fail: (why: string) => never): number {
  const lower = text.toLowerCase();
  if (lower === "nan") return Number.NaN;
  if (lower === "+inf" || lower === "inf") return Number.POSITIVE_INFINITY;
  if (lower === "-inf") return Number.NEGATIVE_INFINITY;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) fail(`value ${text} is not a number`);
  return Number(text);
}

function checkHistogram(family: MetricFamily): void {
  const series = new Map<string, { inf?: number; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? {};
    if (sample.name.endsWith("_bucket") && le === "+Inf") entry.inf = sample.value;
    if (sample.name.endsWith("_count")) entry.count = sample.value;
    series.set(key, entry);
  }
  for (const [labels, { inf, count }] of series) {
    if (inf === undefined || inf !== count) {
      throw new Error(`histogram ${family.name}${labels}: +Inf bucket ${inf} is not its count ${count}`);
    }
  }
}

/**
 * The sum of the samples of family `name` whose labels include `labels` (for a histogram, of
 * its counts), 0 when none match: a counter never incremented has no sample.
 */
export function metricValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = families.get(name);
  if (!family) return 0;
  const sampleName = family.type === "histogram" || family.type === "summary" ? `${name}_count` : name;
  return family.samples
    .filter((sample) => sample.name === sampleName)
    .filter((sample) => Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0);
}
