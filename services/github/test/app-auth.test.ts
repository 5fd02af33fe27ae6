import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { MissingCredentialError, type UpstreamError } from "@hookmesh/kit";
import { failure } from "@hookmesh/kit/testing";
import { afterEach, describe, expect, it } from "vitest";
import { ReactionTarget } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { AuthPreconditionError, InvalidCredentialError } from "../src/errors.js";
import { error } from "./fake-github.js";
import { APP_ID, appKeys, type Harness, OTHER_INSTALLATION, REPO, setup, TOKEN } from "./helpers.js";

/** A JWT's parts, decoded. */
function decodeJwt(jwt: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [header, claims] = jwt
    .split(".")
    .slice(0, 2)
    .map((part) => JSON.parse(Buffer.from(part, "base64url").toString()) as Record<string, unknown>);
  return { header: header!, claims: claims! };
}

describe("GitHub App auth", () => {
  let h: Harness;
  let dir: string | undefined;
  let keyFile: string;
  afterEach(async () => {
    await h?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** The service with App auth whose key comes from a file, which the test then rewrites. */
  async function withKeyFile(pem: string): Promise<void> {
    dir = await mkdtemp(join(tmpdir(), "hookmesh-github-app-"));
    keyFile = join(dir, "app.pem");
    await writeFile(keyFile, pem);
    h = await setup({ auth: "none", env: { GITHUB_APP_ID: APP_ID, GITHUB_APP_PRIVATE_KEY_FILE: keyFile } });
  }

  it("signs a JWT (RS256, iss, iat − 60 s, exp ≤ 10 min) that GitHub verifies, and calls with the installation token", async () => {
    h = await setup({ auth: "app" });
    h.fake.addIssue("acme", "widgets", 7);
    const before = Math.floor(Date.now() / 1000);
    const res = await h.api.createComment({ repository: REPO, number: 7n, body: "On it" });
    const after = Math.floor(Date.now() / 1000);

    const [mint, post] = h.fake.received;
    expect(mint).toMatchObject({ method: "POST", path: "/app/installations/777/access_tokens", text: "" });
    expect(mint!.headers).toMatchObject({
      accept: "application/vnd.github+json",
      "x-github-api-version": "2022-11-28",
    });
    const jwt = /^Bearer (.+)$/.exec(mint!.headers.authorization!)![1]!;
    const { header, claims } = decodeJwt(jwt);
    expect(header).toEqual({ alg: "RS256", typ: "JWT" });
    expect(claims.iss).toBe(APP_ID);
    expect(claims.iat).toBeGreaterThanOrEqual(before - 60);
    expect(claims.iat).toBeLessThanOrEqual(after - 60);
    expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(600);
    expect(claims.exp).toBeLessThanOrEqual(after + 9 * 60);
    // The fake verified the signature with the App's public key and checked the claims.
    expect(h.fake.jwts).toHaveLength(1);

    const [installationToken] = h.fake.installationTokens.keys();
    expect(post).toMatchObject({
      method: "POST",
      path: "/repos/acme/widgets/issues/7/comments",
      body: { body: "On it" },
    });
    expect(post!.headers.authorization).toBe(`Bearer ${installationToken}`);
    // The call's own request, not the token request, is what CallInfo describes.
    expect(res.call?.request).toMatchObject({
      method: "POST",
      url: `${h.fake.url}/repos/acme/widgets/issues/7/comments`,
    });
  });

  it("caches the installation token: several calls, one token request", async () => {
    h = await setup({ auth: "app" });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    await h.api.createComment({ repository: REPO, number: 7n, body: "x" });
    await h.api.addReaction({
      repository: REPO,
      target: ReactionTarget.ISSUE,
      number: 7n,
      commentId: 0n,
      content: "eyes",
    });
    await Promise.all([1, 2, 3].map(() => h.api.getIssue({ repository: REPO, number: 7n })));

    expect(h.fake.tokenRequests()).toHaveLength(1);
    expect(h.fake.apiRequests()).toHaveLength(6);
    expect(new Set(h.fake.apiRequests().map((r) => r.headers.authorization)).size).toBe(1);
  });

  it("concurrent first calls share one token request", async () => {
    h = await setup({ auth: "app" });
    h.fake.addIssue("acme", "widgets", 7);
    await Promise.all([1, 2, 3, 4].map(() => h.api.getIssue({ repository: REPO, number: 7n })));
    expect(h.fake.tokenRequests()).toHaveLength(1);
    expect(h.fake.apiRequests()).toHaveLength(4);
  });

  it("keeps one token per installation", async () => {
    h = await setup({ auth: "app" });
    h.fake.addIssue("acme", "widgets", 7);
    h.fake.addIssue("acme", "gadgets", 1);
    await h.api.getIssue({ repository: REPO, number: 7n });
    await h.api.getIssue({
      repository: { owner: "acme", repo: "gadgets", installationId: OTHER_INSTALLATION },
      number: 1n,
    });
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.fake.tokenRequests().map((r) => r.path)).toEqual([
      "/app/installations/777/access_tokens",
      "/app/installations/778/access_tokens",
    ]);
  });

  it("refreshes the token once it is within 5 minutes of its expires_at", async () => {
    h = await setup({ auth: "app", fake: { tokenLifetimeMs: 5 * 60_000 + 400 } });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.fake.tokenRequests()).toHaveLength(1);
    await sleep(450);
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.fake.tokenRequests()).toHaveLength(2);
    const auths = h.fake.apiRequests().map((r) => r.headers.authorization);
    expect(auths[0]).toBe(auths[1]);
    expect(auths[2]).not.toBe(auths[1]);
  });

  it("never reuses a token that GitHub gives with less than the margin left", async () => {
    h = await setup({ auth: "app", fake: { tokenLifetimeMs: 4 * 60_000 } });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.fake.tokenRequests()).toHaveLength(2);
  });

  it("drops a token GitHub refuses (401) and retries once with a new one, a create included", async () => {
    h = await setup({ auth: "app" });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    h.fake.revokeInstallationTokens();
    const res = await h.api.createComment({ repository: REPO, number: 7n, body: "x" });
    expect(res.comment?.body).toBe("x");
    expect(h.fake.lines().map((l) => l.split(" ").slice(0, 2).join(" "))).toEqual([
      "POST /app/installations/777/access_tokens",
      "GET /repos/acme/widgets/issues/7",
      "POST /repos/acme/widgets/issues/7/comments",
      "POST /app/installations/777/access_tokens",
      "POST /repos/acme/widgets/issues/7/comments",
    ]);
    expect(h.fake.comments.size).toBe(1);
  });

  it("retries a refused token only once: a second 401 is Unauthenticated", async () => {
    h = await setup({ auth: "app" });
    h.fake.answerTo(/^GET \/repos\//, error(401, "Bad credentials"), error(401, "Bad credentials"));
    const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
    expect((err as UpstreamError).code).toBe(Code.Unauthenticated);
    expect(h.fake.received).toHaveLength(4);
  });

  it("requires repository.installation_id with App auth, sending nothing", async () => {
    h = await setup({ auth: "app" });
    const err = await failure(
      h.api.createComment({ repository: { ...REPO, installationId: 0n }, number: 7n, body: "x" }),
    );
    expect(err).toBeInstanceOf(AuthPreconditionError);
    expect(err.message).toContain("repository.installation_id is required");
    expect(h.fake.received).toHaveLength(0);
  });

  it("ignores installation_id with a personal token", async () => {
    h = await setup({ auth: "token" });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: { ...REPO, installationId: 0n }, number: 7n });
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.fake.received.map((r) => r.headers.authorization)).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  });

  it("uses the App when both an App and a personal token are configured", async () => {
    h = await setup({ auth: "both" });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.auth.mode()).toBe("app");
    expect(h.fake.tokenRequests()).toHaveLength(1);
    expect(h.fake.apiRequests()[0]!.headers.authorization).not.toBe(`Bearer ${TOKEN}`);
  });

  it("says what to check when GitHub refuses the JWT, and when the installation is unknown", async () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    h = await setup({ auth: "none", env: { GITHUB_APP_ID: APP_ID, GITHUB_APP_PRIVATE_KEY: other } });
    const refused = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
    expect((refused as UpstreamError).code).toBe(Code.Unauthenticated);
    expect(refused.message).toContain(
      "github refused the GitHub App's JWT (check GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY",
    );
    expect(h.fake.received).toHaveLength(1);
    await h.close();

    h = await setup({ auth: "app" });
    const unknown = await failure(h.api.getIssue({ repository: { ...REPO, installationId: 999n }, number: 7n }));
    expect((unknown as UpstreamError).code).toBe(Code.NotFound);
    expect(unknown.message).toBe("github: GitHub App installation 999 not found (is the App installed there?)");
  });

  it("takes a key whose newlines are written as \\n, and refuses one that is not a key without echoing it", async () => {
    h = await setup({
      auth: "none",
      env: { GITHUB_APP_ID: APP_ID, GITHUB_APP_PRIVATE_KEY: appKeys().pem.replace(/\n/g, "\\n") },
    });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    expect(h.fake.jwts).toHaveLength(1);
    await h.close();

    await withKeyFile(appKeys().pem);
    // A key file rotated to something that is not a key: the next call says so, without the file's text.
    await writeFile(keyFile, "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----");
    process.emit("SIGHUP", "SIGHUP");
    const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
    expect(err).toBeInstanceOf(InvalidCredentialError);
    expect(err.message).toBe("GITHUB_APP_PRIVATE_KEY: is not a PEM-encoded private key");
    expect(h.fake.received).toHaveLength(0);
  });

  it("fails naming GITHUB_APP_PRIVATE_KEY when the App's key is gone", async () => {
    await withKeyFile(appKeys().pem);
    await writeFile(keyFile, "");
    process.emit("SIGHUP", "SIGHUP");
    const err = await failure(h.api.getIssue({ repository: REPO, number: 7n }));
    expect(err).toBeInstanceOf(MissingCredentialError);
    expect((err as MissingCredentialError).variable).toBe("GITHUB_APP_PRIVATE_KEY");
  });

  describe("CreateCloneToken", () => {
    it("mints a token limited to reading the repository, never cached, and the URL that clones with it", async () => {
      h = await setup({ auth: "app" });
      const before = Date.now();
      const first = await h.api.createCloneToken({ repository: REPO });
      const second = await h.api.createCloneToken({ repository: REPO });

      expect(h.fake.lines()).toEqual([
        'POST /app/installations/777/access_tokens {"repositories":["widgets"],"permissions":{"contents":"read"}}',
        'POST /app/installations/777/access_tokens {"repositories":["widgets"],"permissions":{"contents":"read"}}',
      ]);
      expect(first.token).toMatch(/^ghs_/);
      expect(second.token).not.toBe(first.token);
      expect(h.fake.installationTokens.get(first.token)).toMatchObject({
        installationId: "777",
        repositories: ["widgets"],
        permissions: { contents: "read" },
      });
      expect(first.cloneUrl).toBe(`http://x-access-token:${first.token}@${h.fake.host}/acme/widgets.git`);
      expect(timestampMs(first.expireTime!)).toBeGreaterThanOrEqual(before + 60 * 60_000 - 1_000);
      expect(first.call).toMatchObject({
        dryRun: false,
        request: {
          method: "POST",
          url: `${h.fake.url}/app/installations/777/access_tokens`,
          body: '{"repositories":["widgets"],"permissions":{"contents":"read"}}',
        },
      });
      expect(JSON.stringify(first.call)).not.toContain(first.token);

      // The scoped token is not the one the service calls with.
      h.fake.addIssue("acme", "widgets", 7);
      await h.api.getIssue({ repository: REPO, number: 7n });
      expect(h.fake.tokenRequests()).toHaveLength(3);
      expect(h.fake.tokenRequests()[2]!.text).toBe("");
    });

    it("looks up the App's installation on a repository no event named it for", async () => {
      h = await setup({ auth: "app" });
      h.fake.installationOf.set("acme/widgets", OTHER_INSTALLATION);
      const clone = await h.api.createCloneToken({ repository: { ...REPO, installationId: 0n } });

      expect(h.fake.lines()).toEqual([
        "GET /repos/acme/widgets/installation",
        `POST /app/installations/${OTHER_INSTALLATION}/access_tokens {"repositories":["widgets"],"permissions":{"contents":"read"}}`,
      ]);
      expect(h.fake.installationTokens.get(clone.token)).toMatchObject({ installationId: String(OTHER_INSTALLATION) });
    });

    it("is NotFound where the App is not installed, PermissionDenied for a repository of another installation", async () => {
      h = await setup({ auth: "app" });
      const missing = (await failure(
        h.api.createCloneToken({ repository: { ...REPO, installationId: 0n } }),
      )) as UpstreamError;
      expect(missing.code).toBe(Code.NotFound);
      expect(missing.message).toContain("not installed on acme/widgets");

      h.fake.installationOf.set("acme/widgets", OTHER_INSTALLATION);
      const foreign = (await failure(h.api.createCloneToken({ repository: REPO }))) as UpstreamError;
      expect(foreign.code).toBe(Code.PermissionDenied);
      expect(foreign.message).toContain("acme/widgets is not a repository of installation 777");
      expect(h.fake.installationTokens.size).toBe(0);
    });

    it("is FailedPrecondition with a personal token", async () => {
      h = await setup({ auth: "token" });
      const err = await failure(h.api.createCloneToken({ repository: REPO }));
      expect(err).toBeInstanceOf(AuthPreconditionError);
      expect(err.message).toContain("GitHub App auth (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY)");
      expect(h.fake.received).toHaveLength(0);
    });
  });

  describe("on GitHub Enterprise Server (https://{host}/api/v3)", () => {
    it("calls every endpoint under the API's path prefix, and clones from the server's host", async () => {
      h = await setup({ auth: "app", fake: { basePath: "/api/v3" } });
      expect(h.fake.url).toMatch(/\/api\/v3$/);
      h.fake.addIssue("acme", "widgets", 7);
      h.fake.addPull("acme", "widgets", 8);
      const comment = await h.api.createComment({ repository: REPO, number: 7n, body: "x" });
      await h.api.updateComment({ repository: REPO, commentId: comment.comment!.id, body: "y" });
      await h.api.addReaction({
        repository: REPO,
        target: ReactionTarget.ISSUE_COMMENT,
        number: 0n,
        commentId: comment.comment!.id,
        content: "rocket",
      });
      await h.api.getPullRequest({ repository: REPO, number: 8n });
      await h.api.deleteComment({ repository: REPO, commentId: comment.comment!.id });
      const clone = await h.api.createCloneToken({ repository: REPO });

      expect(h.fake.received.map((r) => `${r.method} ${r.rawPath}`)).toEqual([
        "POST /api/v3/app/installations/777/access_tokens",
        "POST /api/v3/repos/acme/widgets/issues/7/comments",
        `PATCH /api/v3/repos/acme/widgets/issues/comments/${comment.comment!.id}`,
        `POST /api/v3/repos/acme/widgets/issues/comments/${comment.comment!.id}/reactions`,
        "GET /api/v3/repos/acme/widgets/pulls/8",
        `DELETE /api/v3/repos/acme/widgets/issues/comments/${comment.comment!.id}`,
        "POST /api/v3/app/installations/777/access_tokens",
      ]);
      expect(h.fake.tokenRequests()).toHaveLength(2);
      expect(clone.cloneUrl).toBe(`http://x-access-token:${clone.token}@${h.fake.host}/acme/widgets.git`);
      expect(comment.call?.request?.url).toBe(`${h.fake.url}/repos/acme/widgets/issues/7/comments`);
    });
  });

  it("never logs the private key, the JWT nor an installation token", async () => {
    h = await setup({ auth: "app" });
    h.fake.addIssue("acme", "widgets", 7);
    await h.api.getIssue({ repository: REPO, number: 7n });
    h.fake.revokeInstallationTokens();
    await h.api.getIssue({ repository: REPO, number: 7n });
    const clone = await h.api.createCloneToken({ repository: REPO });
    h.fake.answer({ status: 500 }, { status: 500 }, { status: 500 });
    await failure(h.api.getIssue({ repository: REPO, number: 7n }));

    const logged = h.lines().join("\n");
    expect(logged).toContain("installation token created");
    const secrets = [
      ...h.fake.installationTokens.keys(),
      clone.token,
      ...h.fake.tokenRequests().map((r) => r.headers.authorization!.slice("Bearer ".length)),
      appKeys().pem.split("\n")[1]!,
    ];
    expect(secrets.length).toBeGreaterThanOrEqual(6);
    for (const secret of secrets) expect(logged).not.toContain(secret);
  });
});
