/**
 * A run's workspace: the checkout of a repository that the agent works in. The worker makes it
 * outside the sandbox before the run (the checkout side: a per-repository bare mirror and a
 * worktree per run, whose `origin` carries no credential) and publishes what the agent changed
 * in it after a successful run (`commit.ts`, `publish.ts`).
 *
 * Everything under `dir` is the agent's to write, `.git` included, so nothing there is trusted
 * when the changes are collected: `objectStore` is where the base commit's objects are read
 * from, a directory the sandbox never sees.
 */
export interface Workspace {
  /** The checkout: the run's working directory, the agent's to change. */
  dir: string;
  /** The repository on GitHub, and the App installation that has access to it (0 with a personal token). */
  repository: { owner: string; repo: string; installationId: bigint };
  /** The branch the checkout was made from: a new pull request targets it. */
  baseRef: string;
  /** The commit checked out: the published commit's parent. */
  baseSha: string;
  /** For a task on a pull request: its number and head branch (checked out at `baseSha`). */
  pullRequest?: { number: bigint; headRef: string } | undefined;
  /**
   * A git `objects` directory outside the sandbox that holds `baseSha` and its history (the
   * worker's mirror's), which the agent cannot write.
   */
  objectStore: string;
}
