import { storeCaller } from "@hookmesh/kit";

/**
 * Runs the gateway's Redis calls. An outage becomes kit's StoreUnavailableError: deliveries
 * cannot be made durable here (RPC: UNAVAILABLE; webhook: 503 with Retry-After, so the sender
 * keeps the delivery). Reply errors lose the command arguments (a custom webhook's secret, a
 * webhook body) before anything can log them.
 */
export const storeCall = storeCaller("gateway store");
