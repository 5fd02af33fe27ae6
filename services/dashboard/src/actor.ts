import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { peerKey } from "@hookmesh/kit";

/** Set on the web port for a call from a signed-in browser: the session's actor. */
export const browserActorKey = createContextKey<string | undefined>(undefined, {
  description: "the signed-in browser session's actor",
});

/** Who is calling, as the audit log names them: the browser's session, else the verified identity. */
export function actorOf(ctx: HandlerContext): string {
  const browser = ctx.values.get(browserActorKey);
  if (browser !== undefined) return browser;
  const peer = ctx.values.get(peerKey);
  // Without identities (HOOKMESH_INSECURE=1) nobody is proved; the log says so instead of guessing.
  return peer?.id ?? "anonymous (insecure mode)";
}

/** Whether the call came through the web port from a browser. */
export function fromBrowser(ctx: HandlerContext): boolean {
  return ctx.values.get(browserActorKey) !== undefined;
}
