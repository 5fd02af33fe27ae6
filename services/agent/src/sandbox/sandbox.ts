import { spawnSync } from "node:child_process";
import { accessSync, constants, lstatSync, readlinkSync, realpathSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "@hookmesh/kit";
import { AgentNetwork, type AgentProfile } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { EgressProxy, type ResolveHost } from "./egress-proxy.js";

/** How a process is started: what a runner would run, or the sandbox wrapped around it. */
export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Set when the launcher reports, on fd 3, the pid of the sandbox's own process group. */
  reportsSandboxPid?: boolean;
}

/** One run's sandbox, entered before the agent starts and closed once it has ended. */
export interface RunSandbox {
  wrap(launch: Launch): Launch;
  close(): Promise<void>;
}

export interface SandboxRun {
  workdir: string;
  /** Host paths shown read-only at the same place, for this run only. */
  readonlyPaths?: readonly string[];
  profile: AgentProfile;
  logger: Logger;
}

export interface Sandbox {
  /** `bwrap` or `off`, as the worker logs it. */
  readonly mode: string;
  enter(run: SandboxRun): Promise<RunSandbox>;
}

/** The profile asks for something no worker can give (an unknown network); retrying will not help. */
export class InvalidProfileError extends Error {
  override name = "InvalidProfileError";
}

/** The sandbox cannot run on this machine: the worker must not start. */
export class SandboxUnavailableError extends Error {
  override name = "SandboxUnavailableError";
}

export type NetworkMode = "none" | "egress" | "host";

export function networkMode(profile: AgentProfile): NetworkMode {
  switch (profile.network) {
    case AgentNetwork.UNSPECIFIED:
    case AgentNetwork.NONE:
      return "none";
    case AgentNetwork.EGRESS:
      return "egress";
    case AgentNetwork.HOST:
      return "host";
    default:
      throw new InvalidProfileError(
        `unknown network ${String(profile.network)} in the agent profile; this worker knows none, egress and host`,
      );
  }
}

/** AGENT_SANDBOX=off: agents run as the worker's children, with its files and network. */
export function unsandboxed(): Sandbox {
  return {
    mode: "off",
    async enter({ profile, logger }) {
      networkMode(profile);
      logger.warn("AGENT_SANDBOX=off: this agent runs unsandboxed, with the worker's files, processes and network");
      return { wrap: (launch) => launch, close: async () => {} };
    },
  };
}

export interface BwrapSandboxOptions {
  /** The bwrap binary. */
  bwrap: string;
  /** Host paths made visible read-only at the same place (AGENT_SANDBOX_READONLY_PATHS). */
  readonlyPaths: readonly string[];
  /** The runners' binaries as configured (CLAUDE_BIN), made visible read-only when found on `PATH`. */
  runnerBinaries: readonly string[];
  /** The worker's PATH, to find the runners' binaries. */
  path: string;
  /** Where egress proxies' sockets are made; default the system's temporary directory. */
  socketRoot?: string;
  resolveHost?: ResolveHost;
}

/** Inside the sandbox: where the proxy's socket and the forwarder are mounted, and its port. */
const SANDBOX_PROXY_SOCKET = "/run/hookmesh/egress.sock";
const SANDBOX_FORWARDER = "/run/hookmesh/egress-forwarder.mjs";
const SANDBOX_PROXY_PORT = 3128;
/** The agent's user inside its user namespace: never root, whoever the worker runs as. */
const SANDBOX_UID = "1000";

const forwarderScript = fileURLToPath(new URL("egress-forwarder.mjs", import.meta.url));

/** What of /etc a process needs for names, TLS, users, time and the dynamic linker. */
const ETC_PATHS = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/host.conf",
  "/etc/gai.conf",
  "/etc/passwd",
  "/etc/group",
  "/etc/localtime",
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/pki",
  "/etc/crypto-policies",
  "/etc/alternatives",
];

/**
 * Runs each agent under bubblewrap: new user (uid 1000, no capabilities), PID, mount, IPC,
 * UTS, cgroup and network namespaces; read-only system directories; fresh /proc, /dev and /tmp;
 * the run's directory as the only writable path. The network is the profile's: none, an
 * allowlisting proxy (egress), or the host's.
 */
export class BwrapSandbox implements Sandbox {
  readonly mode = "bwrap";
  private readonly baseArgs: string[];

  constructor(private readonly options: BwrapSandboxOptions) {
    this.baseArgs = [
      ...systemMounts(),
      ...options.readonlyPaths.flatMap((path) => ["--ro-bind", path, path]),
      ...options.runnerBinaries.flatMap((binary) => binaryMounts(binary, options.path)),
      ...nodeMounts(),
    ];
  }

  /** Runs `true` in a sandbox as runs get it: throws SandboxUnavailableError saying what to do when it fails. */
  probe(): void {
    const probe = spawnSync(this.options.bwrap, [...this.commonArgs("none"), ...BwrapSandbox.sealArgs, "--", "true"], {
      env: {},
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 10_000,
    });
    if (probe.status === 0) return;
    const why = probe.error?.message || probe.stderr?.toString().trim() || `exit ${probe.status}`;
    throw new SandboxUnavailableError(
      `bubblewrap (${this.options.bwrap}) cannot sandbox agent runs: ${why}. Install Debian's "bubblewrap" package ` +
        "(apt-get install bubblewrap), allow unprivileged user namespaces (in a container: a seccomp/AppArmor " +
        "profile that permits them), check AGENT_SANDBOX_READONLY_PATHS, or set AGENT_SANDBOX=off to run agents unsandboxed",
    );
  }

  async enter({ workdir, readonlyPaths = [], profile, logger }: SandboxRun): Promise<RunSandbox> {
    const network = networkMode(profile);
    const runArgs = [
      ...this.commonArgs(network),
      ...readonlyPaths.flatMap((path) => ["--ro-bind", path, path]),
      "--bind",
      workdir,
      workdir,
      "--chdir",
      workdir,
    ];
    if (network === "host") {
      logger.warn(
        "agent profile network HOST: this run shares the worker's network (its loopback, Redis, the mesh's ports)",
      );
    }
    if (network !== "egress") {
      return { wrap: (launch) => this.wrap(runArgs, launch), close: async () => {} };
    }
    const socketDir = await mkdtemp(join(this.options.socketRoot ?? tmpdir(), "hookmesh-egress-"));
    const socketPath = join(socketDir, "proxy.sock");
    const proxy = await EgressProxy.listen(socketPath, {
      hosts: profile.egressHosts,
      logger,
      ...(this.options.resolveHost && { resolve: this.options.resolveHost }),
    }).catch(async (err: unknown) => {
      await rm(socketDir, { recursive: true, force: true });
      throw err;
    });
    const proxyUrl = `http://127.0.0.1:${SANDBOX_PROXY_PORT}`;
    const egressArgs = [
      ...runArgs,
      "--ro-bind",
      socketPath,
      SANDBOX_PROXY_SOCKET,
      "--ro-bind",
      forwarderScript,
      SANDBOX_FORWARDER,
    ];
    return {
      wrap: (launch) =>
        this.wrap(egressArgs, {
          command: process.execPath,
          args: [SANDBOX_FORWARDER, SANDBOX_PROXY_SOCKET, String(SANDBOX_PROXY_PORT), launch.command, ...launch.args],
          env: {
            ...launch.env,
            HTTP_PROXY: proxyUrl,
            HTTPS_PROXY: proxyUrl,
            http_proxy: proxyUrl,
            https_proxy: proxyUrl,
            NO_PROXY: "localhost,127.0.0.1,::1",
            no_proxy: "localhost,127.0.0.1,::1",
          },
        }),
      async close() {
        await proxy.close();
        await rm(socketDir, { recursive: true, force: true });
      },
    };
  }

  private commonArgs(network: NetworkMode): string[] {
    return [
      "--unshare-all",
      "--unshare-user",
      "--uid",
      SANDBOX_UID,
      "--gid",
      SANDBOX_UID,
      ...(network === "host" ? ["--share-net"] : []),
      "--disable-userns",
      "--hostname",
      "hookmesh-agent",
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
      // Before the binds: a tmpfs mounted later would hide every path bound under /tmp (a
      // checkout or read-only path there, as on CI machines that clone into /tmp).
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--tmpfs",
      "/tmp",
      ...this.baseArgs,
    ];
  }

  /** Last: the sandbox's root (where bwrap made the mount points) becomes read-only too. */
  private static readonly sealArgs = ["--remount-ro", "/"];

  /**
   * bwrap is started with the agent's environment only, so that even the sandbox's init (whose
   * /proc/1/environ the agent can read) holds nothing else.
   */
  private wrap(args: readonly string[], launch: Launch): Launch {
    return {
      command: this.options.bwrap,
      args: [...args, ...BwrapSandbox.sealArgs, "--info-fd", "3", "--", launch.command, ...launch.args],
      env: launch.env,
      reportsSandboxPid: true,
    };
  }
}

/** /usr read-only, and /bin, /lib… as the host has them (directories, or symlinks into /usr). */
function systemMounts(): string[] {
  const args = ["--ro-bind", "/usr", "/usr"];
  for (const path of ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]) {
    const stat = lstatOrUndefined(path);
    if (stat?.isSymbolicLink()) args.push("--symlink", readlinkSync(path), path);
    else if (stat?.isDirectory()) args.push("--ro-bind", path, path);
  }
  for (const path of ETC_PATHS) args.push("--ro-bind-try", path, path);
  return args;
}

/** The node that runs the worker, for the egress forwarder and for node-based agents, when it is not under /usr. */
function nodeMounts(): string[] {
  const node = realpathSync(process.execPath);
  if (node.startsWith("/usr/")) return [];
  const mounts = ["--ro-bind", dirname(node), dirname(node)];
  if (node !== process.execPath) mounts.push("--symlink", node, process.execPath);
  return mounts;
}

/**
 * A runner's binary, found on PATH as the runner will find it: its real directory read-only
 * (a package's other files come with it), and the name it was found under linked to it.
 */
function binaryMounts(binary: string, path: string): string[] {
  const found = findOnPath(binary, path);
  if (found === undefined) return [];
  const real = realpathSync(found);
  if (real.startsWith("/usr/")) return [];
  const mounts = ["--ro-bind", dirname(real), dirname(real)];
  if (found !== real) mounts.push("--symlink", real, found);
  return mounts;
}

function findOnPath(binary: string, path: string): string | undefined {
  const candidates = binary.includes("/") ? [binary] : path.split(delimiter).map((dir) => join(dir, binary));
  return candidates.find((candidate) => {
    if (!isAbsolute(candidate)) return false;
    try {
      accessSync(candidate, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
