import { once } from "node:events";
import * as net from "node:net";

/** A TCP port free on 127.0.0.1 right now, for a process a test starts with a fixed port. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, "close");
  return port;
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
