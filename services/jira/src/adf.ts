/**
 * Plain text to and from Atlassian Document Format, the rich-text JSON that Jira Cloud's
 * REST API v3 takes and returns for comment bodies and issue descriptions.
 */

export interface AdfNode {
  type: string;
  text?: string;
  attrs?: Record<string, unknown>;
  content?: AdfNode[];
}

export interface AdfDoc extends AdfNode {
  type: "doc";
  version: 1;
  content: AdfNode[];
}

/** Line endings as `\n`, trailing whitespace of each line and blank lines at the ends removed. */
export function normalizeText(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .split("\n")
    .map((line) => line.trimEnd())
    .join("\n")
    .replace(/^\n+|\n+$/g, "");
}

/**
 * A document of paragraphs, split on blank lines; single newlines inside a paragraph become
 * hard breaks. Text nodes are never empty (Jira rejects those).
 */
export function textToAdf(text: string): AdfDoc {
  const paragraphs = normalizeText(text)
    .split(/\n{2,}/)
    .filter((paragraph) => paragraph !== "");
  return {
    type: "doc",
    version: 1,
    content: paragraphs.map((paragraph) => ({
      type: "paragraph",
      content: paragraph
        .split("\n")
        .flatMap((line, i) => [
          ...(i > 0 ? [{ type: "hardBreak" }] : []),
          ...(line === "" ? [] : [{ type: "text", text: line }]),
        ]),
    })),
  };
}

/** Inline nodes: their text runs together; everything else is a block, set apart by blank lines. */
const INLINE = new Set([
  "text",
  "hardBreak",
  "mention",
  "emoji",
  "inlineCard",
  "date",
  "status",
  "mediaInline",
  "placeholder",
]);
/** Blocks whose children go on consecutive lines rather than in paragraphs. */
const LINE_LISTS = new Set(["bulletList", "orderedList", "taskList", "decisionList", "tableRow"]);

/**
 * The text of a document: text nodes flattened, paragraphs (and other blocks) joined by blank
 * lines, hard breaks as newlines, list items one per line. A string (a v2 wiki-markup body) is
 * returned as it is; anything else that is not a node reads as empty.
 */
export function adfToText(value: unknown): string {
  if (typeof value === "string") return value;
  if (!isNode(value)) return "";
  return nodeText(value)
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

function nodeText(node: AdfNode): string {
  switch (node.type) {
    case "text":
      return node.text ?? "";
    case "hardBreak":
      return "\n";
    case "mention":
    case "emoji":
    case "status":
    case "placeholder":
      return attr(node, "text") ?? attr(node, "shortName") ?? "";
    case "inlineCard":
    case "blockCard":
    case "embedCard":
      return attr(node, "url") ?? "";
    case "rule":
      return "---";
  }
  const children = (node.content ?? []).filter(isNode);
  if (children.every((child) => INLINE.has(child.type))) return children.map(nodeText).join("");
  const separator = LINE_LISTS.has(node.type) ? "\n" : "\n\n";
  return children
    .map(nodeText)
    .filter((text) => text !== "")
    .join(separator);
}

function attr(node: AdfNode, name: string): string | undefined {
  const value = node.attrs?.[name];
  return typeof value === "string" ? value : undefined;
}

function isNode(value: unknown): value is AdfNode {
  return typeof value === "object" && value !== null && typeof (value as { type?: unknown }).type === "string";
}
