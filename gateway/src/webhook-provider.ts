import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EventSchema, Provider } from "../../gen/hookmesh/events/v1/event_pb.js";
import { WebhookRejection } from "./http-errors.js";

/** A webhook request whose body has been read, before anything in it is trusted. */
export interface IncomingWebhook {
  headers: IncomingHttpHeaders;
  rawBody: Buffer;
  /** The Content-Type's media type, lower-cased, without parameters. */
  contentType: string;
  receivedAt: Date;
}

/** The provider-specific part of an Event; the pipeline adds the raw body, times and trace. */
export type EventFields = Omit<
  MessageInitShape<typeof EventSchema>,
  "$typeName" | "provider" | "rawBody" | "contentType" | "receiveTime" | "traceContext"
>;

/** What a verified request is: an event to submit, or something answered right here. */
export type ProviderVerdict =
  | { kind: "event"; event: EventFields & { deliveryId: string; eventType: string } }
  | { kind: "reply"; status: number; body: unknown; log: string };

/**
 * One provider's webhook rules: which requests it takes, how they are signed, and how their
 * bodies become Events. Verification always runs on the raw bytes, before parsing.
 */
export interface WebhookProvider {
  /** The route segment (`/webhooks/{name}`) and log name. */
  readonly name: string;
  readonly provider: Provider;
  readonly contentTypes: readonly string[];
  readonly maxBodyBytes: number;
  /**
   * How long the fast path may wait for the tasks service before the delivery goes to the
   * outbox instead: the provider's own answer deadline, less a margin.
   */
  readonly submitTimeoutMs: number;
  /**
   * Headers carrying a signature whose names the delivery log would not recognize as such
   * (a custom webhook's own header), so that it redacts them too.
   */
  readonly signatureHeaders?: readonly string[];
  /**
   * The timestamp the signature covers besides the body, for senders that sign one (Slack, a
   * custom route signing `{timestamp}.{body}`): with the body's digest it identifies the
   * signed content, which the replay check remembers. Absent: the signature covers the body only.
   */
  signedTimestamp?(webhook: IncomingWebhook): string | undefined;
  /** Throws a 401 WebhookRejection unless one of `secrets` signed the request. */
  verify(webhook: IncomingWebhook, secrets: readonly string[]): void;
  /** Throws a 400 WebhookRejection for content it cannot read. */
  parse(webhook: IncomingWebhook): ProviderVerdict;
}

export const JSON_TYPE = "application/json";
export const FORM_TYPE = "application/x-www-form-urlencoded";

/** How a provider signs: the header (as its docs spell it), and what the configured secrets are called there. */
export interface SignatureHeader {
  header: string;
  secrets: string;
}

/**
 * What every built-in provider does the same way: what it states (its endpoint name, enum
 * value, content types, answer deadline, signature header, and a configurable body cap) and
 * the checks its signing and parsing rules are made of. Each subclass says why its numbers are
 * what they are, and adds only its rules.
 */
export abstract class BuiltInWebhookProvider implements WebhookProvider {
  constructor(
    readonly name: string,
    readonly provider: Provider,
    readonly contentTypes: readonly string[],
    readonly submitTimeoutMs: number,
    private readonly signature: SignatureHeader,
    readonly maxBodyBytes: number,
  ) {}

  abstract verify(webhook: IncomingWebhook, secrets: readonly string[]): void;
  abstract parse(webhook: IncomingWebhook): ProviderVerdict;

  /** The signature header's value; a 401 naming the header when it is missing. */
  protected signatureOf(webhook: IncomingWebhook): string {
    const value = header(webhook.headers, this.signature.header.toLowerCase());
    if (!value) throw new WebhookRejection(401, "signature required", `missing ${this.signature.header}`);
    return value;
  }

  /** A 401 naming the header, unless one of the configured secrets made `givenHex` over `content`. */
  protected requireHmac(content: Buffer, givenHex: string, secrets: readonly string[]): void {
    if (!hmacMatches("sha256", content, givenHex, secrets)) {
      const { header: name, secrets: what } = this.signature;
      throw new WebhookRejection(401, "signature mismatch", `${name} does not match any configured ${what}`);
    }
  }

  /** The body, which must be a JSON object (a 400 otherwise). */
  protected jsonBody(webhook: IncomingWebhook): JsonObject {
    return parseJsonObject(webhook.rawBody.toString("utf8"));
  }

  /** The provider's id of the delivery from `idHeader`; from a sender that gives none, the digest of its bytes. */
  protected deliveryIdOf(webhook: IncomingWebhook, idHeader: string): string {
    return header(webhook.headers, idHeader) ?? bodyDigestId(webhook.rawBody);
  }
}

/** A header's single value, or undefined when absent, empty or repeated. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * True if `givenHex` is the hex HMAC of `content` under any of `secrets`. Compared in constant
 * time, over every secret, so that timing shows neither which secret nor which byte differed.
 */
export function hmacMatches(
  algorithm: "sha1" | "sha256" | "sha512",
  content: Buffer,
  givenHex: string,
  secrets: readonly string[],
): boolean {
  const digestBytes = { sha1: 20, sha256: 32, sha512: 64 }[algorithm];
  // Exactly the digest in hex: Buffer.from(hex) would silently stop at the first bad character.
  if (!new RegExp(`^[0-9a-fA-F]{${digestBytes * 2}}$`).test(givenHex)) return false;
  const given = Buffer.from(givenHex, "hex");
  let valid = false;
  for (const secret of secrets) {
    valid = timingSafeEqual(given, createHmac(algorithm, secret).update(content).digest()) || valid;
  }
  return valid;
}

export type JsonObject = Record<string, unknown>;

/** A body that must be a JSON object; anything else is a 400. */
export function parseJsonObject(json: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new WebhookRejection(400, "body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WebhookRejection(400, "body must be a JSON object");
  }
  return value as JsonObject;
}

/** The identity of a request its sender gives no id: the digest of its bytes. */
export function bodyDigestId(rawBody: Buffer): string {
  return `sha256:${createHash("sha256").update(rawBody).digest("hex")}`;
}

/** Safe readers for parsed JSON whose shape is the sender's to choose. */
export function obj(value: unknown): JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as JsonObject) : {};
}

export function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

export function int(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}
