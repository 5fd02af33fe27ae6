import { ClaudeRunner } from "./claude.js";
import { CommandRunner } from "./command.js";
import type { Runner, RunnerSettings } from "./runner.js";

/** Every runner, by the name a profile's `runner` (or AGENT_RUNNER) uses. */
const runnerFactories: Readonly<Record<string, (settings: RunnerSettings) => Runner>> = {
  command: (settings) => new CommandRunner(settings),
  claude: (settings) => new ClaudeRunner(settings),
};

export const runnerNames: readonly string[] = Object.keys(runnerFactories);

export type Runners = ReadonlyMap<string, Runner>;

export function createRunners(settings: RunnerSettings): Runners {
  return new Map(Object.entries(runnerFactories).map(([name, factory]) => [name, factory(settings)]));
}
