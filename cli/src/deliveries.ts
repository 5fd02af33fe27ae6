import { parseArgs } from "node:util";
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Delivery, DeliverySchema, DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import { DeliveryService } from "../../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { enumValue, type Print, required } from "./args.js";

/** `hookmesh deliveries list|show|redeliver`, against the gateway's delivery log. */
export async function deliveriesCommand(args: string[], gateway: Transport, print: Print): Promise<void> {
  const client = createClient(DeliveryService, gateway);
  const [sub, ...rest] = args;
  switch (sub) {
    case "list": {
      const { values } = parseArgs({
        args: rest,
        options: { status: { type: "string" }, provider: { type: "string" }, limit: { type: "string", default: "20" } },
      });
      const { deliveries } = await client.listDeliveries({
        pageSize: Number(values.limit),
        status: values.status
          ? enumValue(DeliveryStatus, "DELIVERY_STATUS_", values.status, "--status")
          : DeliveryStatus.UNSPECIFIED,
        provider: values.provider
          ? enumValue(Provider, "PROVIDER_", values.provider, "--provider")
          : Provider.UNSPECIFIED,
      });
      for (const delivery of deliveries) print(formatDelivery(delivery));
      return;
    }
    case "show":
      return print(
        toJsonString(DeliverySchema, (await client.getDelivery({ id: required(rest[0], "delivery id") })).delivery!, {
          prettySpaces: 2,
        }),
      );
    case "redeliver":
      return print(formatDelivery((await client.redeliver({ id: required(rest[0], "delivery id") })).delivery!));
    default:
      throw new Error(`unknown deliveries command "${sub ?? ""}": use list, show or redeliver`);
  }
}

function formatDelivery(d: Delivery): string {
  const time = d.receiveTime ? timestampDate(d.receiveTime).toISOString() : "";
  const outcome = d.taskId ? `task ${d.taskId}` : d.reason;
  return `${d.id}  ${time}  ${d.route.padEnd(8)} ${DeliveryStatus[d.status].padEnd(9)} ${d.httpStatus}  ${d.eventType}  ${outcome}`.trimEnd();
}
