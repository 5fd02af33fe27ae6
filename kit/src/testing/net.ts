import * as net from "node:net";

/** Ports this process has handed out, so that servers a test starts side by side never share one. */
const handedOut = new Set<number>();

/**
 * A TCP port free on 127.0.0.1 right now, for a process a test starts with a fixed port.
 * It is chosen below Linux's ephemeral range (32768 up), where outgoing connections take their
 * source ports: a port from that range, free when checked, can be a connection's before the
 * server binds it (a CI run lost a Redis node so). Below it, only a listener can take the port.
 */
export function freePort(): Promise<number> {
  return freePortLadder(1, 1);
}

/**
 * A base port whose ports base, base + step, … base + step·(count - 1) are all free now, as
 * `freePort` chooses them: `hookmesh start --replicas` lays replicas out from fixed ports.
 */
export async function freePortLadder(step: number, count: number): Promise<number> {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - step * count));
    const ports = Array.from({ length: count }, (_, i) => base + step * i);
    if (ports.some((port) => handedOut.has(port))) continue;
    // Taken before the check, which yields: a ladder chosen meanwhile cannot pick them too.
    for (const port of ports) handedOut.add(port);
    if ((await Promise.all(ports.map(bindable))).every(Boolean)) return base;
    for (const port of ports) handedOut.delete(port);
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A client connection that sends `greeting` (if any) and then nothing, keeping what it receives. */
export interface IdleConnection {
  socket: net.Socket;
  received(): string;
}

/**
 * Opens a TCP connection to `port` on loopback that sends `greeting` (if any) and then stays
 * silent, for tests of a server's idle and handshake limits. The caller destroys it.
 */
export function idleConnection(port: number, greeting?: string | Buffer): Promise<IdleConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("error", () => {});
    socket.once("connect", () => {
      if (greeting !== undefined) socket.write(greeting);
      resolve({ socket, received: () => received });
    });
    socket.once("close", () => reject(new Error("closed before it connected")));
  });
}

/** Resolves when `socket` has closed; a test's client never closes it, so the server did. */
export function closedByServer(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    socket.once("close", () => resolve());
  });
}

/** Opens `count` connections to `port` and resolves once the server has closed every one (a connection cap). */
export async function refusedConnections(port: number, count: number): Promise<void> {
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve) => {
          const socket = net.connect(port, "127.0.0.1");
          socket.on("error", () => {});
          socket.resume();
          socket.once("close", () => resolve());
        }),
    ),
  );
}
