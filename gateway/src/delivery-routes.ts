import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { ErrorMapper } from "@hookmesh/kit";
import { DeliveryService } from "../../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { type DeliveryLog, DeliveryNotFoundError, InvalidDeliveryPageTokenError } from "./delivery-log.js";
import { RedeliveryRefusedError, type WebhookPipeline } from "./pipeline.js";

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;

export function deliveryServiceRoutes(deliveries: DeliveryLog, pipeline: Pick<WebhookPipeline, "redeliver">) {
  return (router: ConnectRouter) =>
    router.service(DeliveryService, {
      async listDeliveries(req) {
        if (req.pageSize < 0) throw new ConnectError("page_size must not be negative", Code.InvalidArgument);
        const pageSize = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        const page = await deliveries.list(
          pageSize,
          { provider: req.provider || undefined, status: req.status || undefined },
          req.pageToken || undefined,
        );
        return { ...page, rejections: req.pageToken ? [] : await deliveries.rejections() };
      },
      async getDelivery(req) {
        return { delivery: await deliveries.get(req.id) };
      },
      async redeliver(req, ctx) {
        return { delivery: await pipeline.redeliver(req.id, ctx.signal) };
      },
    });
}

export const mapDeliveryError: ErrorMapper = (err) => {
  if (err instanceof DeliveryNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof InvalidDeliveryPageTokenError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof RedeliveryRefusedError) return new ConnectError(err.message, Code.FailedPrecondition);
  return undefined;
};
