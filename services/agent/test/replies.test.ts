import { rm } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { memoryLogger } from "@hookmesh/kit/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EventSchema, Provider, SubjectSchema } from "../../../gen/hookmesh/events/v1/event_pb.js";
import { GitHubService, ReactionTarget } from "../../../gen/hookmesh/github/v1/github_pb.js";
import { JiraService } from "../../../gen/hookmesh/jira/v1/jira_pb.js";
import { SentryService } from "../../../gen/hookmesh/sentry/v1/sentry_pb.js";
import { SlackService } from "../../../gen/hookmesh/slack/v1/slack_pb.js";
import { Acknowledgment } from "../../../gen/hookmesh/tasks/v1/route_pb.js";
import { type Task, type TaskEvent, TaskSchema, TaskState } from "../../../gen/hookmesh/tasks/v1/task_pb.js";
import { type FailTaskRequest, LeaseSchema, WorkerService } from "../../../gen/hookmesh/tasks/v1/worker_service_pb.js";
import { systemClock } from "../src/agent-run.js";
import { LeasedRun } from "../src/leased-run.js";
import { createReplierFactory, type ReplyClients } from "../src/replies/replier.js";
import { createRunners } from "../src/runners/index.js";
import { profile, scratchDir, settings } from "./helpers.js";

const DASHBOARD = "http://dash.example:8080";

interface Call {
  method: string;
  req: Record<string, unknown>;
}

/**
 * Fakes of the four integration services, sharing one store: creating calls keep their result
 * per idempotency key (a repeated key returns the first comment), as the real services do.
 */
class FakeIntegrations {
  readonly calls: Call[] = [];
  readonly bodies = new Map<string, string>();
  /** When set, every call fails with it. */
  error: ConnectError | undefined;
  /** When set, answers are dry runs, each describing its request in full under this API root, as the services do. */
  dryRunUrl: string | undefined;
  private readonly byKey = new Map<string, string>();
  private nextId = 100;

  private record(method: string, req: object): void {
    this.calls.push({ method, req: req as Record<string, unknown> });
    if (this.error) throw this.error;
  }

  private created(key: string, body: string): { id: string; replayed: boolean } {
    const known = this.byKey.get(key);
    if (known) return { id: known, replayed: true };
    const id = String(this.nextId++);
    this.byKey.set(key, id);
    this.bodies.set(id, body);
    return { id, replayed: false };
  }

  private call(name: string, payload: object, replayed = false) {
    if (this.dryRunUrl === undefined) return { replayed };
    return {
      dryRun: true,
      request: { method: "POST", url: `${this.dryRunUrl}/${name}`, body: JSON.stringify(payload) },
    };
  }

  readonly transport = createRouterTransport((router) => {
    router.service(GitHubService, {
      createComment: (req) => {
        this.record("github.CreateComment", req);
        const { id, replayed } = this.created(req.idempotencyKey, req.body);
        return {
          comment: { id: BigInt(id), body: this.bodies.get(id) ?? "" },
          call: this.call("issues/42/comments", { body: req.body }, replayed),
        };
      },
      updateComment: (req) => {
        this.record("github.UpdateComment", req);
        // As the GitHub service refuses it: a comment id it did not give is no comment.
        if (req.commentId <= 0n)
          throw new ConnectError("comment_id is required (a positive number)", Code.InvalidArgument);
        this.bodies.set(String(req.commentId), req.body);
        return {
          comment: { id: req.commentId, body: req.body },
          call: this.call(`issues/comments/${req.commentId}`, { body: req.body }),
        };
      },
      addReaction: (req) => {
        this.record("github.AddReaction", req);
        return { reactionId: 7n, call: this.call("issues/42/reactions", { content: req.content }) };
      },
    });
    router.service(SlackService, {
      postMessage: (req) => {
        this.record("slack.PostMessage", req);
        const { id, replayed } = this.created(req.idempotencyKey, req.text);
        return {
          channel: req.channel,
          ts: id,
          call: this.call("chat.postMessage", { channel: req.channel, text: req.text }, replayed),
        };
      },
      updateMessage: (req) => {
        this.record("slack.UpdateMessage", req);
        this.bodies.set(req.ts, req.text);
        return {
          channel: req.channel,
          ts: req.ts,
          call: this.call("chat.update", { channel: req.channel, ts: req.ts, text: req.text }),
        };
      },
      addReaction: (req) => {
        this.record("slack.AddReaction", req);
        return { call: this.call("reactions.add", { channel: req.channel, name: req.name }) };
      },
    });
    router.service(JiraService, {
      addComment: (req) => {
        this.record("jira.AddComment", req);
        const { id, replayed } = this.created(req.idempotencyKey, req.body);
        return { comment: { id, body: req.body }, call: this.call("comment", { body: req.body }, replayed) };
      },
      updateComment: (req) => {
        this.record("jira.UpdateComment", req);
        this.bodies.set(req.commentId, req.body);
        return {
          comment: { id: req.commentId, body: req.body },
          call: this.call(`comment/${req.commentId}`, { body: req.body }),
        };
      },
    });
    router.service(SentryService, {
      addComment: (req) => {
        this.record("sentry.AddComment", req);
        const { id, replayed } = this.created(req.idempotencyKey, req.text);
        return { comment: { id, text: req.text }, call: this.call("comments", { text: req.text }, replayed) };
      },
      updateComment: (req) => {
        this.record("sentry.UpdateComment", req);
        this.bodies.set(req.commentId, req.text);
        return {
          comment: { id: req.commentId, text: req.text },
          call: this.call(`comments/${req.commentId}`, { text: req.text }),
        };
      },
    });
  });

  clients(): ReplyClients {
    return {
      github: createClient(GitHubService, this.transport),
      slack: createClient(SlackService, this.transport),
      jira: createClient(JiraService, this.transport),
      sentry: createClient(SentryService, this.transport),
    };
  }

  methods(): string[] {
    return this.calls.map((c) => c.method);
  }
}

/** A WorkerService that answers CompleteTask / FailTask with the task's next state. */
class FakeWorker {
  readonly events: TaskEvent[] = [];
  readonly completed: string[] = [];
  readonly failed: FailTaskRequest[] = [];
  /** The state FailTask answers with. */
  stateAfterFailure = TaskState.DEAD;
  readonly client = createClient(
    WorkerService,
    createRouterTransport((router) =>
      router.service(WorkerService, {
        heartbeat: () => ({ cancelRequested: false, expireTime: timestampFromMs(Date.now() + 60_000) }),
        reportEvents: (req) => {
          this.events.push(...req.events);
          return { cancelRequested: false };
        },
        completeTask: (req) => {
          this.completed.push(req.taskId);
          return { task: { id: req.taskId, state: TaskState.SUCCEEDED } };
        },
        failTask: (req) => {
          this.failed.push(req);
          return { task: { id: req.taskId, state: this.stateAfterFailure } };
        },
      }),
    ),
  );

  toolCalls(): { name: string; detail: string }[] {
    return this.events.flatMap((e) =>
      e.kind.case === "toolCall" ? [{ name: e.kind.value.name, detail: e.kind.value.detail }] : [],
    );
  }
}

function githubTask(
  id: string,
  script: string,
  init: { attempt?: number; acknowledgment?: Acknowledgment; commentId?: bigint } = {},
): Task {
  return create(TaskSchema, {
    id,
    prompt: script,
    attempt: init.attempt ?? 1,
    maxAttempts: 3,
    profile: profile({ acknowledgment: init.acknowledgment ?? Acknowledgment.UNSPECIFIED }),
    event: create(EventSchema, {
      provider: Provider.GITHUB,
      subject: create(SubjectSchema, {
        ref: {
          case: "github",
          value: { owner: "octo", repo: "repo", number: 42n, installationId: 9n, commentId: init.commentId ?? 0n },
        },
      }),
    }),
  });
}

describe("answering back where the event came from", () => {
  let integrations: FakeIntegrations;
  let worker: FakeWorker;
  let workdirRoot: string;
  let logLines: () => string[];

  beforeEach(async () => {
    integrations = new FakeIntegrations();
    worker = new FakeWorker();
    workdirRoot = await scratchDir("replies");
  });

  afterEach(async () => {
    await rm(workdirRoot, { recursive: true, force: true });
  });

  async function run(task: Task, options: { progressIntervalMs?: number } = {}): Promise<void> {
    const log = memoryLogger("replies-test");
    logLines = log.lines;
    const leased = new LeasedRun(
      { ...create(LeaseSchema, { leaseId: `lease-${task.id}`, heartbeatInterval: durationFromMs(10_000) }), task },
      {
        worker: worker.client,
        runners: createRunners(settings({ agentCommand: 'eval "$HOOKMESH_PROMPT"', killGraceMs: 300 })),
        settings: {
          defaultRunner: "command",
          maxRunTimeMs: 60_000,
          workdirRoot,
          workerEnv: { PATH: process.env.PATH },
          eventFlushMs: 20,
          eventBatchSize: 50,
          dashboardUrl: DASHBOARD,
          progressIntervalMs: options.progressIntervalMs ?? 0,
        },
        clock: systemClock,
        logger: log.logger,
        replies: createReplierFactory({ clients: integrations.clients(), logger: log.logger }),
      },
    );
    await leased.execute();
  }

  it("acknowledges once with the task's key, then edits that comment into the answer", async () => {
    await run(githubTask("t1", "echo hello there"));

    expect(integrations.methods()).toEqual(["github.CreateComment", "github.UpdateComment"]);
    const [createCall, updateCall] = integrations.calls;
    expect(createCall!.req).toMatchObject({
      repository: { owner: "octo", repo: "repo", installationId: 9n },
      number: 42n,
      idempotencyKey: "t1:ack",
    });
    expect(createCall!.req.body).toContain("Working on it");
    expect(createCall!.req.body).toContain(`${DASHBOARD}/tasks/t1`);
    expect(updateCall!.req).toMatchObject({ commentId: 100n });
    const answer = integrations.bodies.get("100")!;
    expect(answer).toContain("hello there");
    expect(answer).toMatch(/Done in \d+s · \$0\.00 · http:\/\/dash\.example:8080\/tasks\/t1/);
    expect(worker.completed).toEqual(["t1"]);
    // The acknowledgment is in the timeline, with the comment's id.
    expect(worker.toolCalls()).toContainEqual({ name: "github.CreateComment", detail: "100" });
  });

  it("edits the first attempt's comment on a retry instead of posting a second one", async () => {
    worker.stateAfterFailure = TaskState.QUEUED;
    await run(githubTask("t2", "echo boom >&2; exit 3", { attempt: 1 }));
    expect(integrations.bodies.get("100")).toContain("Attempt 1 failed");
    expect(integrations.bodies.get("100")).toContain("Retrying");

    // The worker of the second attempt (say, after a crash) knows nothing of the first one's comment.
    await run(githubTask("t2", "echo fixed it", { attempt: 2 }));

    const creates = integrations.calls.filter((c) => c.method === "github.CreateComment");
    expect(creates.map((c) => c.req.idempotencyKey)).toEqual(["t2:ack", "t2:ack"]);
    expect(integrations.bodies.size).toBe(1);
    expect(integrations.calls.at(-1)).toMatchObject({ method: "github.UpdateComment", req: { commentId: 100n } });
    expect(integrations.bodies.get("100")).toContain("fixed it");
    expect(worker.toolCalls()).toContainEqual({ name: "github.CreateComment", detail: "100 (replayed)" });
  });

  it("ends a task that failed for good with a short error and how to retry it", async () => {
    worker.stateAfterFailure = TaskState.DEAD;
    await run(githubTask("t3", "echo 'cannot reach the database' >&2; exit 2", { attempt: 3 }));

    expect(integrations.methods()).toEqual(["github.CreateComment", "github.UpdateComment"]);
    const text = integrations.bodies.get("100")!;
    expect(text).toContain("Failed");
    expect(text).toContain("hookmesh tasks retry t3");
    expect(text).toContain(`${DASHBOARD}/tasks/t3`);
  });

  it("reacts with 👀 in reaction mode and posts the answer once the task ends", async () => {
    await run(githubTask("t4", "echo all good", { acknowledgment: Acknowledgment.REACTION, commentId: 555n }));

    expect(integrations.methods()).toEqual(["github.AddReaction", "github.CreateComment"]);
    expect(integrations.calls[0]!.req).toMatchObject({
      target: ReactionTarget.ISSUE_COMMENT,
      commentId: 555n,
      content: "eyes",
    });
    expect(integrations.calls[1]!.req).toMatchObject({ idempotencyKey: "t4:answer" });
    expect(integrations.calls[1]!.req.body).toContain("all good");
  });

  it("posts nothing when the profile says none, or the event has no place to answer", async () => {
    await run(githubTask("t5", "echo quiet", { acknowledgment: Acknowledgment.NONE }));
    const custom = githubTask("t6", "echo custom");
    custom.event!.provider = Provider.CUSTOM;
    await run(custom);
    const noSubject = githubTask("t7", "echo nowhere");
    noSubject.event!.subject = undefined;
    await run(noSubject);

    expect(integrations.calls).toEqual([]);
    expect(worker.completed).toEqual(["t5", "t6", "t7"]);
  });

  it("never fails the run when replying fails", async () => {
    integrations.error = new ConnectError("github is down", Code.Unavailable);
    await run(githubTask("t8", "echo still done"));

    expect(worker.completed).toEqual(["t8"]);
    expect(integrations.methods()).toEqual(["github.CreateComment", "github.CreateComment"]);
    expect(logLines().filter((l) => l.includes("could not reply"))).toHaveLength(2);
  });

  it("answers in the Slack thread and records dry runs in the timeline", async () => {
    integrations.dryRunUrl = "https://slack.com/api";
    const task = githubTask("t9", "echo from slack");
    task.event = create(EventSchema, {
      provider: Provider.SLACK,
      subject: create(SubjectSchema, {
        ref: { case: "slack", value: { channelId: "C1", threadTs: "111.1", messageTs: "111.2" } },
      }),
    });
    await run(task);

    expect(integrations.methods()).toEqual(["slack.PostMessage", "slack.UpdateMessage"]);
    expect(integrations.calls[0]!.req).toMatchObject({ channel: "C1", threadTs: "111.1", idempotencyKey: "t9:ack" });
    expect(integrations.calls[1]!.req).toMatchObject({ channel: "C1", ts: "100" });
    const [ack] = worker.toolCalls();
    expect(ack).toEqual({
      name: "slack.PostMessage",
      detail: expect.stringMatching(
        /^dry run: POST https:\/\/slack\.com\/api\/chat\.postMessage \{"channel":"C1","text":"⏳ Working on it/,
      ),
    });
  });

  it("in a dry run, edits the acknowledgment it was given into the answer: two dry-run calls in the timeline", async () => {
    integrations.dryRunUrl = "https://api.github.com/repos/octo/repo";
    await run(githubTask("t13", "echo the answer"));

    expect(integrations.methods()).toEqual(["github.CreateComment", "github.UpdateComment"]);
    expect(logLines().filter((l) => l.includes("could not reply"))).toEqual([]);
    const id = String(integrations.calls[1]!.req.commentId);
    const calls = worker.toolCalls().filter((c) => c.name.startsWith("github."));
    expect(calls).toEqual([
      {
        name: "github.CreateComment",
        detail: expect.stringMatching(
          /^dry run: POST https:\/\/api\.github\.com\/repos\/octo\/repo\/issues\/42\/comments \{"body":"⏳ Working on it/,
        ),
      },
      {
        name: "github.UpdateComment",
        detail: expect.stringContaining(
          `dry run: POST https://api.github.com/repos/octo/repo/issues/comments/${id} {"body":"the answer`,
        ),
      },
    ]);
    expect(worker.completed).toEqual(["t13"]);
  });

  it("comments on Jira and Sentry issues", async () => {
    const jira = githubTask("t10", "echo jira done");
    jira.event = create(EventSchema, {
      provider: Provider.JIRA,
      subject: create(SubjectSchema, { ref: { case: "jira", value: { issueKey: "OPS-1" } } }),
    });
    await run(jira);
    const sentry = githubTask("t11", "echo sentry done");
    sentry.event = create(EventSchema, {
      provider: Provider.SENTRY,
      subject: create(SubjectSchema, { ref: { case: "sentry", value: { issueId: "777" } } }),
    });
    await run(sentry);

    expect(integrations.methods()).toEqual([
      "jira.AddComment",
      "jira.UpdateComment",
      "sentry.AddComment",
      "sentry.UpdateComment",
    ]);
    expect(integrations.calls[0]!.req).toMatchObject({ issueKey: "OPS-1", idempotencyKey: "t10:ack" });
    expect(integrations.calls[2]!.req).toMatchObject({ issueId: "777", idempotencyKey: "t11:ack" });
    expect(integrations.bodies.get("100")).toContain("jira done");
    expect(integrations.bodies.get("101")).toContain("sentry done");
  });

  it("edits the acknowledgment with progress while the agent runs", async () => {
    await run(githubTask("t12", "sleep 0.5; echo slow answer"), { progressIntervalMs: 100 });

    const updates = integrations.calls.filter((c) => c.method === "github.UpdateComment");
    expect(updates.length).toBeGreaterThanOrEqual(2);
    expect(updates[0]!.req.body).toContain("Still working");
    expect(integrations.bodies.get("100")).toContain("slow answer");
    expect(integrations.calls.filter((c) => c.method === "github.CreateComment")).toHaveLength(1);
  });
});
