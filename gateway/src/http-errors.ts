/**
 * A webhook request the gateway refuses, with the HTTP status the provider should see.
 * `detail` is for the log line only (which check failed), never for the response body.
 */
export class WebhookRejection extends Error {
  override name = "WebhookRejection";
  constructor(
    readonly status: number,
    message: string,
    readonly detail?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  /** Facts about the delivery for the log line, known once its headers were read. */
  context: Record<string, unknown> = {};

  withContext(context: Record<string, unknown>): this {
    this.context = context;
    return this;
  }
}
