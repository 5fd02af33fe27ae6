import { describe, expect, it } from "vitest";
import { adfToText, normalizeText, textToAdf } from "../src/adf.js";

describe("textToAdf", () => {
  it("makes one paragraph per blank-line-separated block and hard breaks for single newlines", () => {
    expect(textToAdf("Working on it.\r\nTask t-42\n\n\n  indented line  \n\nDone")).toEqual({
      type: "doc",
      version: 1,
      content: [
        {
          type: "paragraph",
          content: [
            { type: "text", text: "Working on it." },
            { type: "hardBreak" },
            { type: "text", text: "Task t-42" },
          ],
        },
        { type: "paragraph", content: [{ type: "text", text: "  indented line" }] },
        { type: "paragraph", content: [{ type: "text", text: "Done" }] },
      ],
    });
  });

  it("treats whitespace-only lines as blank and never makes empty text nodes", () => {
    const doc = textToAdf("\n\na\n \t \nb\n\n");
    expect(doc.content).toEqual([
      { type: "paragraph", content: [{ type: "text", text: "a" }] },
      { type: "paragraph", content: [{ type: "text", text: "b" }] },
    ]);
    expect(textToAdf("   ").content).toEqual([]);
  });

  it("round-trips through adfToText to the normalized text", () => {
    const text = "line one\nline two\n\nsecond paragraph\r\n\r\n\r\nthird";
    expect(adfToText(textToAdf(text))).toBe(normalizeText(text).replace(/\n{3,}/g, "\n\n"));
    expect(adfToText(textToAdf(text))).toBe("line one\nline two\n\nsecond paragraph\n\nthird");
  });
});

describe("adfToText", () => {
  it("flattens text nodes, joins paragraphs by blank lines and reads inline nodes", () => {
    const doc = {
      type: "doc",
      version: 1,
      content: [
        {
          type: "paragraph",
          content: [
            { type: "text", text: "Hi " },
            { type: "mention", attrs: { id: "abc", text: "@Mia" } },
            { type: "text", text: ", see ", marks: [{ type: "strong" }] },
            { type: "inlineCard", attrs: { url: "https://example.com/x" } },
            { type: "emoji", attrs: { shortName: ":smile:", text: "😄" } },
          ],
        },
        { type: "heading", attrs: { level: 2 }, content: [{ type: "text", text: "Steps" }] },
        {
          type: "bulletList",
          content: [
            { type: "listItem", content: [{ type: "paragraph", content: [{ type: "text", text: "one" }] }] },
            { type: "listItem", content: [{ type: "paragraph", content: [{ type: "text", text: "two" }] }] },
          ],
        },
        { type: "codeBlock", attrs: { language: "ts" }, content: [{ type: "text", text: "const x = 1;\nx++;" }] },
        { type: "paragraph", content: [] },
        { type: "rule" },
      ],
    };
    expect(adfToText(doc)).toBe(
      "Hi @Mia, see https://example.com/x😄\n\nSteps\n\none\ntwo\n\nconst x = 1;\nx++;\n\n---",
    );
  });

  it("returns a v2 wiki-markup string as it is and reads nothing else as empty", () => {
    expect(adfToText("h1. Title\n\n*bold*")).toBe("h1. Title\n\n*bold*");
    expect(adfToText(null)).toBe("");
    expect(adfToText(undefined)).toBe("");
    expect(adfToText({ content: [] })).toBe("");
  });
});
