import { lstat, mkdir, readdir, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "@hookmesh/kit";

export interface MirrorCacheOptions {
  /** AGENT_REPO_CACHE. */
  root: string;
  /** AGENT_REPO_CACHE_MAX_BYTES: beyond it, least recently used mirrors not in use are removed. */
  maxBytes: number;
  logger: Logger;
}

/**
 * The worker's bare mirrors, one per repository at `{root}/{owner}/{repo}.git` (lower case:
 * GitHub's names are case-insensitive). One fetch at a time per mirror (`exclusive`); a mirror
 * that runs use (`hold`) is never evicted. The last use is the mirror directory's mtime, so the
 * order survives a restart. Within one process only: a cache directory belongs to one worker.
 */
export class MirrorCache {
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly holds = new Map<string, number>();

  constructor(private readonly options: MirrorCacheOptions) {}

  path(owner: string, repo: string): string {
    return join(this.options.root, owner.toLowerCase(), `${repo.toLowerCase()}.git`);
  }

  /** Runs `fn` once no other call for the same mirror runs. */
  async exclusive<T>(mirror: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(mirror) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(fn);
    const tail = mine.catch(() => {});
    this.locks.set(mirror, tail);
    try {
      return await mine;
    } finally {
      if (this.locks.get(mirror) === tail) this.locks.delete(mirror);
    }
  }

  /** Marks a mirror used now and in use until the returned release is called (once). */
  async hold(mirror: string): Promise<() => void> {
    this.holds.set(mirror, (this.holds.get(mirror) ?? 0) + 1);
    const now = new Date();
    await utimes(mirror, now, now).catch(() => {});
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.holds.get(mirror) ?? 1) - 1;
      if (left > 0) this.holds.set(mirror, left);
      else this.holds.delete(mirror);
    };
  }

  /** Removes least recently used mirrors, none in use nor being fetched, until the cache fits its budget. */
  async evict(): Promise<void> {
    const mirrors = await this.list();
    let total = mirrors.reduce((sum, mirror) => sum + mirror.bytes, 0);
    for (const mirror of mirrors.sort((a, b) => a.usedAt - b.usedAt)) {
      if (total <= this.options.maxBytes) return;
      if (this.holds.has(mirror.path) || this.locks.has(mirror.path)) continue;
      await rm(mirror.path, { recursive: true, force: true });
      total -= mirror.bytes;
      this.options.logger.info(
        { mirror: mirror.path, bytes: mirror.bytes, cacheBytes: total, maxBytes: this.options.maxBytes },
        "repository mirror evicted (AGENT_REPO_CACHE_MAX_BYTES)",
      );
    }
  }

  private async list(): Promise<{ path: string; bytes: number; usedAt: number }[]> {
    await mkdir(this.options.root, { recursive: true });
    const found: { path: string; bytes: number; usedAt: number }[] = [];
    for (const owner of await readdir(this.options.root, { withFileTypes: true })) {
      if (!owner.isDirectory()) continue;
      const ownerDir = join(this.options.root, owner.name);
      for (const repo of await readdir(ownerDir, { withFileTypes: true })) {
        if (!repo.isDirectory() || !repo.name.endsWith(".git")) continue;
        const path = join(ownerDir, repo.name);
        const [bytes, info] = await Promise.all([directoryBytes(path), stat(path)]);
        found.push({ path, bytes, usedAt: info.mtimeMs });
      }
    }
    return found;
  }
}

/** Bytes of the files under `dir` (not following symbolic links); 0 for a directory that is gone. */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await directoryBytes(path);
    else
      total += await lstat(path).then(
        (info) => info.size,
        () => 0,
      );
  }
  return total;
}
