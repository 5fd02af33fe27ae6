import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  type Caller,
  InvalidRequestError,
  type ProviderCalls,
  type UnsignedRequest,
  type UpstreamClient,
  UpstreamError,
  type UpstreamResponse,
} from "@hookmesh/kit";
import {
  type FileChange,
  type PublishChangesResponse,
  PublishChangesResponseSchema,
  PublishTarget,
  type PullRequest,
} from "../../../gen/hookmesh/github/v1/github_pb.js";
import { type ProviderRequest, ProviderRequestSchema } from "../../../gen/hookmesh/integrations/v1/integrations_pb.js";
import { BranchMovedError, NotPullRequestBranchError, PublishLimitError } from "./errors.js";
import { toPullRequest } from "./resources.js";

/** Most files one publish takes. */
export const MAX_PUBLISH_FILES = 1000;
/**
 * Most bytes of file content one publish takes: below the RPC's 4 MiB message limit, so the
 * limit that answers is this one, with its precise message.
 */
export const MAX_PUBLISH_BYTES = 3 * 1024 * 1024;
/** A new branch must be under this prefix: only hookmesh's own branches are ever force-updated. */
export const BRANCH_PREFIX = "hookmesh/";

const FILE_MODES = new Set(["100644", "100755", "120000"]);

export interface PublishInput {
  baseSha: string;
  branch: string;
  target: PublishTarget;
  pullRequestBase: string;
  title: string;
  body: string;
  commitMessage: string;
  author?: { name: string; email: string } | undefined;
  files: FileChange[];
}

export interface PublishDeps {
  /** `/repos/{owner}/{repo}`, checked. */
  path: string;
  owner: string;
  upstream: UpstreamClient;
  calls: ProviderCalls;
  /** One request to GitHub with the repository's credential. */
  send(request: UnsignedRequest, caller: Caller): Promise<UpstreamResponse>;
}

/**
 * Publishes a run's changes through GitHub's Git Data API: a blob per file, a tree on the base
 * commit's tree, a commit whose parent is the base, then the branch's ref and (for a new
 * branch) its pull request. Every step is safe to repeat: blobs and trees are content-addressed,
 * a new branch's ref is created or force-updated, and its pull request is looked up before one
 * is opened, so a retried task lands on the same branch and pull request.
 *
 * In a dry run nothing is sent; every request is still described, with the shas GitHub would
 * assign as placeholders (blob shas are git's own, computed here, so they are exact).
 */
export async function publishChanges(
  deps: PublishDeps,
  input: PublishInput,
  caller: Caller,
): Promise<PublishChangesResponse> {
  const checked = validate(input);
  const requests: ProviderRequest[] = [];
  let dryRun = false;
  const call = async <T>(request: UnsignedRequest, read: (answer: unknown) => T, placeholder: T): Promise<T> => {
    requests.push(create(ProviderRequestSchema, deps.upstream.describe(request)));
    const sent = await deps.calls.send(request, caller, (caller) => deps.send(request, caller));
    if (sent.dryRun) {
      dryRun = true;
      return placeholder;
    }
    return read(sent.answer.body);
  };
  const { path } = deps;
  const { branch, baseSha } = checked;

  if (checked.target === PublishTarget.SAME_BRANCH) {
    // Only a pull request's head is ever written besides hookmesh's own branches: never `main`.
    const open = await call(
      {
        method: "GET",
        path: `${path}/pulls?head=${encodeURIComponent(`${deps.owner}:${branch}`)}&state=open&per_page=1`,
        idempotent: true,
      },
      (answer) => Array.isArray(answer) && answer.length > 0,
      true,
    );
    if (!open) throw new NotPullRequestBranchError(`branch ${branch} is not the head of an open pull request`);
  }
  const baseTree = await call(
    { method: "GET", path: `${path}/git/commits/${baseSha}`, idempotent: true },
    (answer) => requireString(object(object(answer).tree).sha, "the base commit's tree"),
    "{base tree}",
  );
  const entries: Record<string, unknown>[] = [];
  for (const file of checked.files) {
    if (file.change.case !== "content") {
      // Checked above: a deletion. GitHub removes a path from the base tree given a null sha.
      entries.push({ path: file.path, mode: "100644", type: "blob", sha: null });
      continue;
    }
    const content = file.change.value;
    const sha = await call(
      {
        method: "POST",
        path: `${path}/git/blobs`,
        body: { content: Buffer.from(content).toString("base64"), encoding: "base64" },
        idempotent: true,
      },
      (answer) => requireString(object(answer).sha, "a blob's sha"),
      gitBlobSha(content),
    );
    entries.push({ path: file.path, mode: file.mode, type: "blob", sha });
  }
  const tree = await call(
    { method: "POST", path: `${path}/git/trees`, body: { base_tree: baseTree, tree: entries }, idempotent: true },
    (answer) => requireString(object(answer).sha, "the tree's sha"),
    "{tree}",
  );

  const headRef = `heads/${branch}`;
  if (checked.target === PublishTarget.SAME_BRANCH) {
    const head = await call(
      { method: "GET", path: `${path}/git/ref/${headRef}`, idempotent: true },
      (answer) => requireString(object(object(answer).object).sha, "the branch's head"),
      baseSha,
    );
    if (head !== baseSha) {
      // A repeat after the ref moved to this very change (parent: the base; tree: ours) is done.
      const headCommit = await call(
        { method: "GET", path: `${path}/git/commits/${head}`, idempotent: true },
        (answer) => object(answer),
        {},
      );
      const parents = Array.isArray(headCommit.parents) ? headCommit.parents : [];
      const sameChange =
        object(headCommit.tree).sha === tree && parents.length === 1 && object(parents[0]).sha === baseSha;
      if (!sameChange) throw new BranchMovedError(branch, baseSha, head);
      return respond({ branch, commitSha: head, requests, dryRun });
    }
  }
  const commit = await call(
    {
      method: "POST",
      path: `${path}/git/commits`,
      body: {
        message: checked.commitMessage,
        tree,
        parents: [baseSha],
        ...(checked.author && { author: checked.author, committer: checked.author }),
      },
      idempotent: false,
    },
    (answer) => requireString(object(answer).sha, "the commit's sha"),
    "{commit}",
  );

  if (checked.target === PublishTarget.SAME_BRANCH) {
    try {
      await call(
        { method: "PATCH", path: `${path}/git/refs/${headRef}`, body: { sha: commit, force: false }, idempotent: true },
        () => undefined,
        undefined,
      );
    } catch (err) {
      // GitHub refuses a ref update that is not a fast-forward with 422: the branch moved meanwhile.
      if (err instanceof UpstreamError && err.status === 422) throw new BranchMovedError(branch, baseSha, "");
      throw err;
    }
    return respond({ branch, commitSha: commit, requests, dryRun });
  }

  try {
    await call(
      {
        method: "POST",
        path: `${path}/git/refs`,
        body: { ref: `refs/heads/${branch}`, sha: commit },
        idempotent: false,
      },
      () => undefined,
      undefined,
    );
  } catch (err) {
    // "Reference already exists": a repeat for the task; its branch takes the new commit.
    if (!(err instanceof UpstreamError && err.status === 422)) throw err;
    await call(
      { method: "PATCH", path: `${path}/git/refs/${headRef}`, body: { sha: commit, force: true }, idempotent: true },
      () => undefined,
      undefined,
    );
  }

  const findPull = () =>
    call(
      {
        method: "GET",
        path: `${path}/pulls?head=${encodeURIComponent(`${deps.owner}:${branch}`)}&state=all&per_page=1`,
        idempotent: true,
      },
      (answer) => (Array.isArray(answer) && answer.length > 0 ? toPullRequest(answer[0]) : undefined),
      undefined as PullRequest | undefined,
    );
  const existing = await findPull();
  if (existing) return respond({ branch, commitSha: commit, pullRequest: existing, requests, dryRun });
  const openRequest: UnsignedRequest = {
    method: "POST",
    path: `${path}/pulls`,
    body: { title: checked.title, head: branch, base: checked.pullRequestBase, body: checked.body },
    idempotent: false,
  };
  try {
    const opened = await call(openRequest, toPullRequest, undefined);
    return respond({ branch, commitSha: commit, pullRequest: opened, created: opened !== undefined, requests, dryRun });
  } catch (err) {
    // "A pull request already exists": another attempt opened it between the lookup and now.
    if (!(err instanceof UpstreamError && err.status === 422 && /already exists/i.test(err.message))) throw err;
    const found = await findPull();
    if (!found) throw err;
    return respond({ branch, commitSha: commit, pullRequest: found, requests, dryRun });
  }
}

function respond(fields: {
  branch: string;
  commitSha: string;
  pullRequest?: PullRequest | undefined;
  created?: boolean;
  requests: ProviderRequest[];
  dryRun: boolean;
}): PublishChangesResponse {
  const { pullRequest, ...rest } = fields;
  return create(PublishChangesResponseSchema, {
    ...rest,
    commitSha: fields.dryRun ? "" : fields.commitSha,
    ...(pullRequest && { pullRequest }),
  });
}

/** The request's fields, checked before anything is sent. */
function validate(input: PublishInput): PublishInput {
  const baseSha = input.baseSha.trim().toLowerCase();
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(baseSha))
    throw new InvalidRequestError("base_sha must be a full commit sha (40 or 64 hex digits)", "base_sha");
  const branch = input.branch.trim();
  checkBranch(branch);
  if (input.target === PublishTarget.NEW_BRANCH) {
    if (!branch.startsWith(BRANCH_PREFIX))
      throw new InvalidRequestError(`branch must start with "${BRANCH_PREFIX}" for a new branch`, "branch");
    checkBranch(input.pullRequestBase.trim(), "pull_request_base");
    if (input.title.trim() === "") throw new InvalidRequestError("title is required for a new branch", "title");
  } else if (input.target !== PublishTarget.SAME_BRANCH) {
    throw new InvalidRequestError(
      "target is required: PUBLISH_TARGET_NEW_BRANCH or PUBLISH_TARGET_SAME_BRANCH",
      "target",
    );
  }
  if (input.commitMessage.trim() === "") throw new InvalidRequestError("commit_message is required", "commit_message");
  if (input.author && (input.author.name.trim() === "" || !input.author.email.includes("@")))
    throw new InvalidRequestError("author needs a name and an email address", "author");
  if (input.files.length === 0) throw new InvalidRequestError("files is empty: there is nothing to publish", "files");
  if (input.files.length > MAX_PUBLISH_FILES)
    throw new PublishLimitError(`${input.files.length} files; at most ${MAX_PUBLISH_FILES} are published at once`);
  let bytes = 0;
  const seen = new Set<string>();
  for (const [i, file] of input.files.entries()) {
    checkPath(file.path, `files[${i}].path`);
    if (seen.has(file.path)) throw new InvalidRequestError(`files[${i}].path "${file.path}" is listed twice`, "files");
    seen.add(file.path);
    if (file.change.case === "content") {
      if (!FILE_MODES.has(file.mode))
        throw new InvalidRequestError(
          `files[${i}].mode must be 100644, 100755 or 120000; got "${file.mode.slice(0, 16)}"`,
          "files",
        );
      bytes += file.change.value.byteLength;
    } else if (file.change.case !== "deleted" || !file.change.value) {
      throw new InvalidRequestError(`files[${i}] needs content or deleted`, "files");
    }
  }
  if (bytes > MAX_PUBLISH_BYTES)
    throw new PublishLimitError(`${bytes} bytes of file content; at most ${MAX_PUBLISH_BYTES} are published at once`);
  return { ...input, baseSha, branch, pullRequestBase: input.pullRequestBase.trim() };
}

/** A branch name git and GitHub take (git check-ref-format's rules, within a safe alphabet). */
function checkBranch(branch: string, field = "branch"): void {
  const ok =
    /^[A-Za-z0-9._/-]{1,200}$/.test(branch) &&
    !branch.split("/").some((part) => part === "" || part.startsWith(".") || part.endsWith(".lock")) &&
    !branch.includes("..") &&
    !branch.endsWith(".");
  if (!ok) throw new InvalidRequestError(`${field} is not a branch name git takes: "${branch.slice(0, 100)}"`, field);
}

/** A path inside the repository: relative, `/`-separated, no `.`, `..` or `.git` segment. */
function checkPath(path: string, field: string): void {
  const ok =
    path.length > 0 &&
    Buffer.byteLength(path) <= 4096 &&
    !path.includes("\0") &&
    !path.split("/").some((part) => part === "" || part === "." || part === ".." || part.toLowerCase() === ".git");
  if (!ok)
    throw new InvalidRequestError(`${field} is not a path inside the repository: "${path.slice(0, 100)}"`, "files");
}

/** Git's id of a blob with this content, which GitHub answers for it too. */
export function gitBlobSha(content: Uint8Array): string {
  return createHash("sha1").update(`blob ${content.byteLength}\0`).update(content).digest("hex");
}

function object(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function requireString(value: unknown, what: string): string {
  if (typeof value !== "string" || value === "")
    throw new UpstreamError(Code.Internal, `GitHub's answer lacks ${what}`);
  return value;
}
