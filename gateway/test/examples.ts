import { createRequire } from "node:module";
import type { WebhookDefinition } from "@octokit/webhooks-examples";

/**
 * Real GitHub webhook payloads from `@octokit/webhooks-examples`. The package's main entry is
 * a JSON file (an array of {name, examples}); `require` loads it the same way under Node and
 * vitest, where a default `import` of JSON would need an import attribute in Node.
 */
const definitions = createRequire(import.meta.url)("@octokit/webhooks-examples") as WebhookDefinition[];

export type Payload = Record<string, unknown>;

/** Every example payload of one event type; fails loudly if the package has none. */
export function examplesOf(eventType: string): Payload[] {
  const definition = definitions.find((d) => d.name === eventType);
  if (!definition || definition.examples.length === 0) throw new Error(`no examples for ${eventType}`);
  // Copies, so that a test editing a payload cannot affect another.
  return definition.examples.map((p) => structuredClone(p) as unknown as Payload);
}

/** The first example of `eventType` whose `action` is `action`. */
export function exampleOf(eventType: string, action?: string): Payload {
  const found = examplesOf(eventType).find((p) => action === undefined || p.action === action);
  if (!found) throw new Error(`no ${eventType} example with action ${action}`);
  return found;
}
