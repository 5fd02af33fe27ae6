import type { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { type Delivery, DeliverySchema, DeliveryStatus } from "../../gen/hookmesh/gateway/v1/delivery_pb.js";
import {
  DeliveryService,
  GetDeliveryResponseSchema,
  ListDeliveriesResponseSchema,
  RedeliverResponseSchema,
} from "../../gen/hookmesh/gateway/v1/delivery_service_pb.js";
import { enumValue, type Print, required } from "./args.js";
import {
  type CommandSpec,
  getSubcommand,
  JSON_FLAG,
  jsonOf,
  nextPageHint,
  PAGING_FLAGS,
  PAGING_OPTIONS,
  pages,
  paging,
  parseCommand,
  runGroup,
} from "./command.js";

const LIST = {
  usage: "deliveries list [--status S] [--provider P] [--page-size N] [--page-token T] [--all] [--json]",
  summary: "What the gateway received and what became of it, newest first.",
  options: { status: { type: "string" }, provider: { type: "string" }, ...PAGING_OPTIONS },
  flags: {
    status: "only deliveries with this status, e.g. accepted, duplicate, rejected",
    provider: "only deliveries from this provider: github, slack, jira, sentry",
    ...PAGING_FLAGS,
  },
  example: "hookmesh deliveries list --status rejected --provider slack",
} satisfies CommandSpec;

const SHOW = {
  usage: "deliveries show ID [--json]",
  summary: "One delivery as JSON (headers redacted, body base64).",
  options: JSON_FLAG,
  flags: { json: "print the whole response (GetDeliveryResponse) instead of the delivery alone" },
  example: "hookmesh deliveries show 3f6c1f0e-…",
} satisfies CommandSpec;

const REDELIVER = {
  usage: "deliveries redeliver ID [--json]",
  summary: "Submits a logged delivery to the tasks service again.",
  options: JSON_FLAG,
  flags: { json: "print the response as protobuf JSON (RedeliverResponse)" },
  example: "hookmesh deliveries redeliver 3f6c1f0e-…",
} satisfies CommandSpec;

/** `hookmesh deliveries list|show|redeliver`, against the gateway's delivery log. */
export async function deliveriesCommand(args: string[], gateway: Transport, print: Print): Promise<void> {
  const client = createClient(DeliveryService, gateway);
  return runGroup(
    "deliveries",
    "The gateway's delivery log.",
    {
      list: {
        spec: LIST,
        async run(rest) {
          const parsed = parseCommand(LIST, rest, print);
          if (!parsed) return;
          const { values } = parsed;
          const page = paging(values);
          const filters = {
            pageSize: page.pageSize,
            status: values.status
              ? enumValue(DeliveryStatus, "DELIVERY_STATUS_", values.status, "--status")
              : DeliveryStatus.UNSPECIFIED,
            provider: values.provider
              ? enumValue(Provider, "PROVIDER_", values.provider, "--provider")
              : Provider.UNSPECIFIED,
          };
          let all: ReturnType<typeof create<typeof ListDeliveriesResponseSchema>> | undefined;
          for await (const res of pages(page, (pageToken) => client.listDeliveries({ ...filters, pageToken }))) {
            if (all) {
              all.deliveries.push(...res.deliveries);
              all.nextPageToken = res.nextPageToken;
            } else {
              // The first page also carries the rejection counts: keep them in the one document.
              all = res;
            }
            if (!values.json) for (const delivery of res.deliveries) print(formatDelivery(delivery));
          }
          if (values.json) return print(jsonOf(ListDeliveriesResponseSchema, all!));
          if (all!.nextPageToken) print(nextPageHint("deliveries list", rest, all!.nextPageToken));
        },
      },
      show: getSubcommand(
        {
          spec: SHOW,
          what: "delivery id",
          fetch: (id) => client.getDelivery({ id }),
          response: GetDeliveryResponseSchema,
          item: DeliverySchema,
          itemOf: (res) => res.delivery!,
        },
        print,
      ),
      redeliver: {
        spec: REDELIVER,
        async run(rest) {
          const parsed = parseCommand(REDELIVER, rest, print);
          if (!parsed) return;
          const res = await client.redeliver({ id: required(parsed.positionals[0], "delivery id") });
          print(parsed.values.json ? jsonOf(RedeliverResponseSchema, res) : formatDelivery(res.delivery!));
        },
      },
    },
    args,
    print,
  );
}

function formatDelivery(d: Delivery): string {
  const time = d.receiveTime ? timestampDate(d.receiveTime).toISOString() : "";
  const outcome = d.taskId ? `task ${d.taskId}` : d.reason;
  return `${d.id}  ${time}  ${d.route.padEnd(8)} ${DeliveryStatus[d.status].padEnd(9)} ${d.httpStatus}  ${d.eventType}  ${outcome}`.trimEnd();
}
