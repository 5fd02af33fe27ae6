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
