import type { DescEnum } from "@bufbuild/protobuf";
import { FieldError } from "@hookmesh/kit";
import {
  type CustomRoute,
  HmacAlgorithm,
  HmacAlgorithmSchema,
  SignedContent,
  SignedContentSchema,
} from "../../../gen/hookmesh/gateway/v1/custom_route_pb.js";

/**
 * A custom webhook that cannot be stored; `field` names the offending field in proto terms,
 * e.g. `route.signature_header`. The message never contains the secret.
 */
export class InvalidCustomRouteError extends FieldError {
  override name = "InvalidCustomRouteError";
}

export const CUSTOM_ROUTE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** GitHub's 25 MB cap, the largest any built-in provider needs. */
export const MAX_CUSTOM_BODY_BYTES = 25 * 1024 * 1024;
/** An HTTP field name (RFC 9110 `token`). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
/** Visible ASCII and space: anything a header value can start with. */
const PREFIX = /^[\x20-\x7e]{0,64}$/;

/**
 * Checks a route before it is stored, so that a request to it can always be verified.
 * The secret's presence for a new route is the store's check: only it knows whether the
 * route exists. Returns the route, unchanged.
 */
export function validateCustomRoute(route: CustomRoute | undefined, path = "route"): CustomRoute {
  if (!route) throw new InvalidCustomRouteError(path, "is required");
  const invalid = (field: string, problem: string) => new InvalidCustomRouteError(`${path}.${field}`, problem);
  if (route.name === "") throw invalid("name", "is required");
  if (!CUSTOM_ROUTE_NAME.test(route.name)) throw invalid("name", "must match [A-Za-z0-9_-]{1,64}");
  if (route.signatureHeader === "") throw invalid("signature_header", "is required");
  if (!HEADER_NAME.test(route.signatureHeader)) throw invalid("signature_header", "must be an HTTP header name");
  if (!PREFIX.test(route.signaturePrefix)) {
    throw invalid("signature_prefix", "must be at most 64 printable ASCII characters");
  }
  requireEnum(route.algorithm, HmacAlgorithm.UNSPECIFIED, HmacAlgorithmSchema, "algorithm", invalid);
  requireEnum(route.signedContent, SignedContent.UNSPECIFIED, SignedContentSchema, "signed_content", invalid);
  if (route.signedContent === SignedContent.TIMESTAMP_DOT_BODY) {
    if (route.timestampHeader === "")
      throw invalid("timestamp_header", "is required with SIGNED_CONTENT_TIMESTAMP_DOT_BODY");
  } else if (route.timestampHeader !== "") {
    throw invalid("timestamp_header", "applies only to SIGNED_CONTENT_TIMESTAMP_DOT_BODY");
  }
  for (const [field, value] of [
    ["timestamp_header", route.timestampHeader],
    ["delivery_id_header", route.deliveryIdHeader],
    ["event_type_header", route.eventTypeHeader],
  ] as const) {
    if (value !== "" && !HEADER_NAME.test(value)) throw invalid(field, "must be an HTTP header name");
  }
  if (route.secret !== "" && splitSecrets(route.secret).length !== route.secret.split(",").length) {
    throw invalid("secret", "must be one or more comma-separated secrets, none of them empty");
  }
  if (!(route.maxBodyBytes >= 0 && route.maxBodyBytes <= MAX_CUSTOM_BODY_BYTES)) {
    throw invalid("max_body_bytes", `must be from 0 to ${MAX_CUSTOM_BODY_BYTES}`);
  }
  return route;
}

/** The secrets of a route's `secret` field: comma-separated, trimmed, empty entries dropped. */
export function splitSecrets(secret: string): string[] {
  return secret
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function requireEnum(
  value: number,
  unspecified: number,
  schema: DescEnum,
  field: string,
  invalid: (field: string, problem: string) => InvalidCustomRouteError,
): void {
  if (value === unspecified) throw invalid(field, "is required");
  if (!schema.values.some((v) => v.number === value)) {
    const names = schema.values.filter((v) => v.number !== unspecified).map((v) => v.name);
    throw invalid(field, `must be one of ${names.join(", ")}`);
  }
}
