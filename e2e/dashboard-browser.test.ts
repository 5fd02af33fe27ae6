import { type ChildProcess, execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type RunningGateway, startGateway } from "@hookmesh/gateway/testing";
import { type ClientFactory, createLogger } from "@hookmesh/kit";
import {
  freePort,
  startService,
  type TestIdentities,
  type TestRedis,
  testIdentities,
  testRedis,
} from "@hookmesh/kit/testing";
import { type RunningTasks, startTasks } from "@hookmesh/tasks/testing";
import pg from "pg";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { TaskState } from "../gen/hookmesh/tasks/v1/task_pb.js";
import { TaskService } from "../gen/hookmesh/tasks/v1/task_service_pb.js";
import { githubHeaders, githubMention, post } from "./deliveries.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = join(root, "cli/bin/hookmesh.js");
const webDist = join(root, "services/dashboard/web/dist/index.html");
/** Screenshots for people to look at; gitignored, kept after the run. */
const artifacts = join(root, "e2e/artifacts");
const CHROMIUM = "/usr/bin/chromium";
const POSTGRES = process.env.DASHBOARD_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432";
const POLL = { timeout: 30_000, interval: 100 };
/** For a run to end: a lease, the sandbox and the agent's steps take long on a loaded machine. */
const RUN = { timeout: 60_000, interval: 200 };
const run = promisify(execFile);

/** What the test reads of a canvas in the page (the root tsconfig has no DOM types). */
interface Canvas {
  width: number;
  height: number;
  getContext(kind: "2d"): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
}

/**
 * The agent: a prompt that says "slowly" prints a step every 0.8 s for eight seconds,
 * so the page can watch its timeline grow; any other answers within a second. Each reports a
 * cost, so the cost charts have data.
 */
const AGENT_COMMAND = [
  'case "$HOOKMESH_PROMPT" in *slowly*) n=10 ;; *) n=2 ;; esac',
  'i=1; while [ "$i" -le "$n" ]; do echo "step $i of $n"; i=$((i+1)); sleep 0.8; done',
  'echo \'{"hookmesh":1,"cost_usd":0.25,"input_tokens":1200,"output_tokens":300}\'',
  'echo "all $n steps done"',
].join("; ");

/**
 * The dashboard's web UI in a real browser (Debian's Chromium through playwright-core) against
 * the mesh: the real tasks service and gateway, the github integration service in dry run, an
 * agent worker and the dashboard as processes started as their packages start, under mTLS, the
 * dashboard on a PostgreSQL database of its own. Runs only where Chromium is installed (.ci/run
 * installs it) and the UI is built (`npm install` and `npm test` build it).
 */
describe.runIf(existsSync(CHROMIUM) && existsSync(webDist))("the dashboard in a browser", { timeout: 120_000 }, () => {
  let identities: TestIdentities;
  let operator: ClientFactory;
  let db: TestRedis;
  let tasks: RunningTasks;
  let gateway: RunningGateway;
  let githubService: ChildProcess;
  let worker: ChildProcess;
  let dashboard: ChildProcess | undefined;
  let database: string;
  let dashboardEnv: NodeJS.ProcessEnv;
  let dashboardGrpc: string;
  let web: string;
  let dir: string;
  let browser: BrowserContext;
  let page: Page;
  const logger = createLogger({ service: "test", level: "silent" });

  async function startDashboard(): Promise<void> {
    dashboard = startService("@hookmesh/dashboard", dashboardEnv);
    // Ready when the web port serves the UI.
    await vi.waitFor(
      async () => {
        if (dashboard?.exitCode !== null) throw new Error("the dashboard exited");
        const res = await fetch(`${web}/login`);
        if (res.status !== 200) throw new Error(`GET /login: ${res.status}`);
      },
      { timeout: 30_000, interval: 100 },
    );
  }

  async function stopDashboard(): Promise<void> {
    const running = dashboard;
    dashboard = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    running.kill("SIGTERM");
    await once(running, "exit");
  }

  /** A signed comment on issue `number` that mentions @hookmesh; the task's id. */
  async function mention(number: number, text: string): Promise<string> {
    const body = githubMention(text, { number, title: `Issue ${number}`, commentId: 1000 + number });
    // post waits for the gateway to forward what it acknowledged: the task is made behind the ack.
    const reply = await post(gateway.base, "github", body, githubHeaders(body));
    expect(reply.status).toBe(202);
    return reply.json.task_id as string;
  }

  const taskService = () => operator.client(TaskService, tasks.url, "tasks");
  const taskState = async (id: string) => (await taskService().getTask({ id })).task!.state;

  /** The link to the task's page in the first dry-run reply (the acknowledgment) of its timeline. */
  async function linkInDryRunReply(id: string): Promise<string> {
    for await (const { event } of taskService().watchTask({ id }, { timeoutMs: 30_000 })) {
      if (event?.kind.case !== "toolCall" || !event.kind.value.detail.startsWith("dry run:")) continue;
      const link = /https?:\/\/[^\s"\\)]+\/tasks\/[\w-]+/.exec(event.kind.value.detail)?.[0];
      if (link) return link;
    }
    throw new Error(`task ${id} ended with no dry-run reply linking to it`);
  }

  const screenshot = (name: string) =>
    page.screenshot({ path: join(artifacts, `dashboard-${name}.png`), fullPage: true });

  // A failed step keeps what the page showed then (an error notice, a page still loading), which
  // a locator's timeout alone does not tell.
  afterEach(async ({ task }) => {
    if (task.result?.state === "fail") await screenshot(`failed-${task.name.slice(0, 40).replace(/\W+/g, "-")}`);
  });

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    identities = await testIdentities();
    operator = identities.clients("operator");
    db = await testRedis("dashboard-browser");
    tasks = await startTasks(db, logger, { env: { ...identities.env, TASKS_LEASE_MS: "3000" } });
    gateway = await startGateway(db, tasks.url, logger, identities.env);
    dir = mkdtempSync(join(tmpdir(), "hookmesh-dashboard-browser-"));

    const githubPort = await freePort();
    githubService = startService("@hookmesh/github", {
      ...identities.env,
      GITHUB_PORT: String(githubPort),
      GITHUB_HOST: "127.0.0.1",
      GITHUB_REDIS_PREFIX: `${db.prefix}github:`,
      HOOKMESH_DRY_RUN: "1",
      LOG_LEVEL: "warn",
    });

    const [agentPort, grpcPort, httpPort] = [await freePort(), await freePort(), await freePort()];
    web = `http://127.0.0.1:${httpPort}`;
    dashboardGrpc = `https://127.0.0.1:${grpcPort}`;
    worker = startService("@hookmesh/agent", {
      ...identities.env,
      TASKS_URL: tasks.url,
      GITHUB_URL: `https://127.0.0.1:${githubPort}`,
      AGENT_ID: "browser-test-worker",
      AGENT_PORT: String(agentPort),
      AGENT_HOST: "127.0.0.1",
      AGENT_RUNNER: "command",
      AGENT_COMMAND,
      AGENT_CONCURRENCY: "2",
      AGENT_WORKDIR: join(dir, "runs"),
      AGENT_PROGRESS_INTERVAL_MS: "0",
      HOOKMESH_DASHBOARD_URL: web,
      LOG_LEVEL: "warn",
    });

    database = `hookmesh_dashboard_browser_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const admin = new pg.Client({ connectionString: `${POSTGRES}/postgres` });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    dashboardEnv = {
      ...identities.env,
      DASHBOARD_PORT: String(grpcPort),
      DASHBOARD_HOST: "127.0.0.1",
      DASHBOARD_HTTP_PORT: String(httpPort),
      DASHBOARD_DATABASE_URL: `${POSTGRES}/${database}`,
      DASHBOARD_TRACE_URL_TEMPLATE: "http://127.0.0.1:16686/trace/{trace_id}",
      TASKS_URL: tasks.url,
      GATEWAY_URL: gateway.grpcUrl,
      GITHUB_URL: `https://127.0.0.1:${githubPort}`,
      AGENT_URL: `https://127.0.0.1:${agentPort}`,
      LOG_LEVEL: "warn",
    };
    await startDashboard();

    browser = await chromium.launchPersistentContext(join(dir, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      viewport: { width: 1280, height: 900 },
    });
    page = browser.pages()[0] ?? (await browser.newPage());
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await stopDashboard();
    for (const child of [worker, githubService]) {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    }
    operator?.close();
    await gateway?.close();
    await tasks?.close();
    await db?.cleanup();
    if (database) {
      const admin = new pg.Client({ connectionString: `${POSTGRES}/postgres` });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("signs in through the URL `hookmesh dashboard` prints, once only", async () => {
    const { stdout } = await run(process.execPath, [bin, "dashboard", "--name", "browser-test"], {
      env: { ...process.env, ...identities.env, DASHBOARD_URL: dashboardGrpc },
    });
    const url = /^http:\/\/\S+\/login\?token=\S+$/m.exec(stdout)?.[0] ?? "";
    expect(url.startsWith(`${web}/login?token=`)).toBe(true);

    await page.goto(url);
    await expect.poll(() => new URL(page.url()).pathname).toBe("/");
    await page.getByRole("heading", { name: "Tasks" }).waitFor();
    expect(await page.getByRole("alert").count()).toBe(0);

    // The link is used up: a second browser following it is not signed in.
    const other = await browser.browser()?.newContext();
    if (other) {
      const second = await other.newPage();
      await second.goto(url);
      await expect.poll(() => second.url()).toContain("/login?error=expired");
      await second.getByRole("alert").filter({ hasText: "already used or has expired" }).waitFor();
      await other.close();
    }
  });

  it("opens the task page from the link in a dry-run reply and watches the timeline grow until the run ends", async () => {
    const id = await mention(7, "please go slowly");
    const link = await linkInDryRunReply(id);
    expect(link).toBe(`${web}/tasks/${id}`);
    expect(await taskState(id)).toBe(TaskState.RUNNING);

    await page.goto(link);
    await page.getByRole("heading", { name: `Task ${id}` }).waitFor();
    const status = page.getByRole("status", { name: "Timeline status" });
    const timeline = page.getByRole("list", { name: "Timeline" }).getByRole("listitem");
    await expect.poll(() => status.textContent(), POLL).toBe("Live");

    // Counted while the page is live: the agent's steps arrive one by one.
    const counts: number[] = [];
    while ((await status.textContent()) === "Live") {
      counts.push(await timeline.count());
      await page.waitForTimeout(250);
    }
    await screenshot("task-live-ended");
    expect(await status.textContent()).toBe("Ended");
    const distinct = [...new Set(counts)];
    expect(distinct.length).toBeGreaterThanOrEqual(3);
    expect(distinct).toEqual([...distinct].sort((a, b) => a - b));

    // The whole run is there once, in order, with the answer, cost and tokens.
    const texts = await timeline.allTextContents();
    for (let step = 1; step <= 10; step++) {
      expect(texts.filter((text) => text.startsWith("output") && text.includes(`step ${step} of 10`))).toHaveLength(1);
    }
    expect(texts.some((text) => text.startsWith("completed"))).toBe(true);
    expect(await page.locator(".badge").first().textContent()).toBe("succeeded");
    await page.getByText("all 10 steps done").first().waitFor();
    await page.getByText("$0.25").first().waitFor();
    await page.getByText("1,200 in, 300 out").first().waitFor();
    // The replies that were not sent (a dry run), as the timeline recorded them.
    const replies = page.getByRole("list", { name: "Replies and requests" }).getByRole("listitem");
    expect(await replies.count()).toBeGreaterThanOrEqual(2);
    expect(await replies.first().textContent()).toContain("dry run: POST");
    expect(await page.getByRole("link", { name: "Open the trace" }).count()).toBeLessThanOrEqual(1);
    expect(await page.getByRole("button", { name: "Cancel task" }).isDisabled()).toBe(true);
    await screenshot("task");
  });

  it("cancels a running task from its page, and runs it again with retry", async () => {
    const id = await mention(8, "please go slowly, to be canceled");
    await expect.poll(async () => taskState(id), POLL).toBe(TaskState.RUNNING);
    await page.goto(`${web}/tasks/${id}`);
    const status = page.getByRole("status", { name: "Timeline status" });
    await expect.poll(() => status.textContent(), POLL).toBe("Live");

    await page.getByRole("button", { name: "Cancel task" }).click();
    await expect.poll(() => status.textContent(), POLL).toBe("Ended");
    expect(await page.locator(".badge").first().textContent()).toBe("canceled");
    expect(await taskState(id)).toBe(TaskState.CANCELED);

    await page.getByRole("button", { name: "Retry task" }).click();
    await page.getByRole("status").filter({ hasText: "The task will run again." }).waitFor();
    await expect.poll(() => page.locator(".badge").first().textContent(), RUN).toBe("succeeded");
    await expect.poll(() => status.textContent(), POLL).toBe("Ended");
    // One timeline across both attempts, each event once: canceled, retried, then the run to its end.
    const items = page.getByRole("list", { name: "Timeline" }).getByRole("listitem");
    const ids = await items.evaluateAll((elements) => elements.map((element) => element.getAttribute("data-event-id")));
    expect(new Set(ids).size).toBe(ids.length);
    const stages = (await items.allTextContents())
      .map((text) => /^(canceled|retried|completed)/.exec(text)?.[1])
      .filter((stage) => stage !== undefined);
    expect(stages.slice(stages.indexOf("retried"))).toEqual(["retried", "completed"]);
    expect(stages.indexOf("canceled")).toBeLessThan(stages.indexOf("retried"));
    await screenshot("task-canceled-retried");
  });

  it("draws the analytics charts from the read model", async () => {
    await page.goto(`${web}/analytics`);
    for (const title of ["Tasks over time by provider", "Tasks over time by outcome", "Cost per day"]) {
      const figure = page.getByRole("figure", { name: title });
      await expect.poll(async () => Number(await figure.getAttribute("data-points")), POLL).toBeGreaterThan(0);
      const canvas = figure.locator("canvas");
      await canvas.waitFor();
      // Something was drawn: the canvas is not blank.
      const painted = await canvas.evaluate((element) => {
        const drawn = element as unknown as Canvas;
        const { data } = drawn.getContext("2d").getImageData(0, 0, drawn.width, drawn.height);
        let count = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) count++;
        return count;
      });
      expect(painted).toBeGreaterThan(100);
    }
    await page.getByRole("table", { name: "Cost by route" }).getByText("github-mention").waitFor();
    await page.getByRole("heading", { name: "Success rate" }).waitFor();
    await screenshot("analytics");
  });

  it("saves a route edited in the browser as `hookmesh routes get` shows it, and shows a refused edit's error", async () => {
    await page.goto(`${web}/routes`);
    await page.getByRole("button", { name: "Edit github-mention" }).click();
    const editor = page.getByLabel("Route (JSON, hookmesh.tasks.v1.Route)");
    const rule = JSON.parse(await editor.inputValue()) as Record<string, unknown>;
    expect(rule.id).toBe("github-mention");

    // A rule the tasks service refuses: its message is shown, and nothing changes.
    await editor.fill(JSON.stringify({ ...rule, provider: "PROVIDER_UNSPECIFIED" }, null, 2));
    await page.getByRole("button", { name: "Save route" }).click();
    const refusal = page.getByRole("form", { name: "Edit route github-mention" }).getByRole("alert");
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/^InvalidArgument: .*provider/);
    await screenshot("route-refused");

    const description = `edited in the browser ${randomUUID().slice(0, 8)}`;
    await editor.fill(JSON.stringify({ ...rule, description, priority: 150 }, null, 2));
    await page.getByRole("button", { name: "Save route" }).click();
    await page.getByRole("status").filter({ hasText: "Route github-mention was saved." }).waitFor();
    await page.getByRole("table", { name: "Routes" }).getByText(description).waitFor();

    const { stdout } = await run(process.execPath, [bin, "routes", "get", "github-mention"], {
      env: { ...process.env, ...identities.env, TASKS_URL: tasks.url },
    });
    // The rule as the editor sent it, but for the time the service stamps on it.
    const { updateTime: _stored, ...stored } = JSON.parse(stdout) as Record<string, unknown>;
    const sent: Record<string, unknown> = { ...rule, description, priority: 150 };
    const { updateTime: _edited, ...edited } = sent;
    expect(stored).toEqual(edited);
    await screenshot("routes");
  });

  it("lists every task once after the dashboard was stopped while they ran and started again", async () => {
    const marker = `restart-${randomUUID().slice(0, 8)}`;
    await stopDashboard();
    const ids: string[] = [];
    for (const number of [21, 22, 23]) ids.push(await mention(number, `${marker} quick one`));
    // Started again while the tasks are still running: it catches up, then follows them live.
    await expect.poll(async () => taskState(ids[0]!), POLL).not.toBe(TaskState.QUEUED);
    await startDashboard();
    for (const id of ids) await expect.poll(async () => taskState(id), RUN).toBe(TaskState.SUCCEEDED);

    // The session survived the restart (it is in the database).
    await page.goto(`${web}/tasks?text=${marker}`);
    const rows = page.getByRole("table", { name: "Tasks" }).getByRole("row");
    const links = async () =>
      (await rows.getByRole("link").allTextContents()).filter((text) => ids.includes(text)).sort();
    await expect
      .poll(
        async () => {
          await page.reload();
          await rows.first().waitFor();
          return links();
        },
        { timeout: 30_000, interval: 500 },
      )
      .toEqual([...ids].sort());
    await expect.poll(async () => await rows.getByText("succeeded").count(), POLL).toBe(3);
    expect(await rows.count()).toBe(4); // the header and one row per task
    await page.getByText("3 tasks").waitFor();
    await screenshot("tasks-after-restart");
  });

  it("shows deliveries with redeliver, health, the audit log, and workers with drain", async () => {
    await page.goto(`${web}/deliveries`);
    const deliveries = page.getByRole("table", { name: "Deliveries" });
    await deliveries
      .getByRole("button", { name: /^Redeliver / })
      .first()
      .click();
    await page.getByRole("status").filter({ hasText: "was sent through the pipeline again" }).waitFor();
    await screenshot("deliveries");

    await page.goto(`${web}/health`);
    const services = page.getByRole("table", { name: "Services" });
    for (const name of ["tasks", "gateway", "github", "agent"]) {
      await expect
        .poll(
          async () =>
            services
              .getByRole("row", { name: new RegExp(`^${name} `) })
              .first()
              .textContent(),
          POLL,
        )
        .toContain("SERVING");
    }
    await screenshot("health");

    await page.goto(`${web}/audit`);
    const audit = page.getByRole("table", { name: "Audit log" });
    for (const action of ["CancelTask", "RetryTask", "UpsertRoute", "Redeliver"]) {
      await audit.getByRole("cell", { name: action, exact: true }).first().waitFor();
    }
    expect(await audit.getByText("browser-test").count()).toBeGreaterThan(0);
    expect(await audit.getByText("INVALID_ARGUMENT").count()).toBe(1);
    await screenshot("audit");

    // Last, as the worker takes no more tasks after it.
    await page.goto(`${web}/workers`);
    const worker = page.getByRole("region", { name: "Worker browser-test-worker" });
    await worker.getByRole("button", { name: "Drain browser-test-worker" }).click();
    await page.getByRole("status").filter({ hasText: "is draining" }).waitFor();
    await expect.poll(() => worker.locator(".badge").textContent(), POLL).toBe("draining");
    await screenshot("workers");
  });
});
