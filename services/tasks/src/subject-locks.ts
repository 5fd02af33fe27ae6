import { type RedisClient, runScript } from "@hookmesh/kit";

const EXTEND_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * One run at a time per subject (a pull request, a Jira issue, a Slack thread): a lease holds
 * its subject's lock for as long as it holds the task, with the same expiry, so a worker that
 * dies frees the subject when its lease runs out.
 */
export class SubjectLocks {
  constructor(
    private readonly redis: RedisClient,
    private readonly options: { keyPrefix: string; leaseMs: number },
  ) {}

  /** True if `leaseId` now holds `subject` (or the subject needs no lock: empty key). */
  async acquire(subject: string, leaseId: string): Promise<boolean> {
    if (!subject) return true;
    return (await this.redis.set(this.key(subject), leaseId, "PX", this.options.leaseMs, "NX")) === "OK";
  }

  async extend(subject: string, leaseId: string): Promise<void> {
    if (subject) await runScript(this.redis, EXTEND_SCRIPT, [this.key(subject)], [leaseId, this.options.leaseMs]);
  }

  async release(subject: string, leaseId: string): Promise<void> {
    if (subject) await runScript(this.redis, RELEASE_SCRIPT, [this.key(subject)], [leaseId]);
  }

  private key(subject: string): string {
    return `${this.options.keyPrefix}subject:${subject}`;
  }
}
