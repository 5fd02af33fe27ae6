// The entrypoint of a sandbox with `egress` network, run by plain node inside it:
//   node egress-forwarder.mjs <proxy socket> <port> <command> [args...]
// The sandbox's network namespace has only its own loopback, so the agent's HTTP_PROXY points
// at 127.0.0.1:<port> here, and each connection to it is carried to the worker's proxy over
// the Unix socket mounted into the sandbox. Then it runs the agent and ends as the agent does.
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { constants } from "node:os";

const [socketPath, port, command, ...args] = process.argv.slice(2);

const server = createServer((client) => {
  const upstream = connect(socketPath);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.pipe(upstream).pipe(client);
});

server.listen(Number(port), "127.0.0.1", () => {
  const agent = spawn(command, args, { stdio: "inherit" });
  // The worker signals the sandbox's whole process group, the agent included: this forwarder
  // stays until the agent is gone, so that the agent keeps its network while it shuts down.
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, () => {});
  agent.once("error", (err) => {
    process.stderr.write(`cannot start ${command}: ${err.message}\n`);
    process.exit(127);
  });
  agent.once("exit", (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
});
