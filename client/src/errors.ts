/*
 * The one error class WSClient.send() rejects with.  `code` is either an
 * error code from the bridge (docs/protocol.md: bad_json, no_route,
 * handler_error, timeout, rate_limited, too_large) or one of the client's
 * own: reply_timeout, closed, not_open, no_replies.
 */

/** A request that got no reply: why, as a code, and which request. */
export class WSRequestError extends Error {
  readonly code: string;
  readonly requestId: string | null;

  /** An error with a machine-readable code and the request it belongs to. */
  constructor(code: string, message: string, requestId: string | null = null) {
    super(message);
    this.name = 'WSRequestError';
    this.code = code;
    this.requestId = requestId;
  }
}
