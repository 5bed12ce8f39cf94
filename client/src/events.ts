/*
 * The events WSClient dispatches.  Each is a plain DOM Event with typed,
 * read-only fields, so listeners work the same in browsers and in Node.
 */

/** The states a WSClient goes through (see docs/client.md). */
export type ConnectionState =
  | 'idle'          // created, open() not called yet
  | 'connecting'    // fetching a token or waiting for the upgrade
  | 'open'          // the socket is open
  | 'reconnecting'  // waiting for the backoff timer
  | 'offline'       // the browser is offline; waiting for the `online` event
  | 'closed';       // close() was called (or reconnecting was declined)

/**
 * `message`: one message from the server; `id` is its v1 cursor (null in
 * plain mode); `topic` is the topic it was published to when the envelope
 * says so (null otherwise: today's bridges do not name it).
 */
export class WSMessageEvent<T = unknown> extends Event {
  readonly data: T;
  readonly id: string | null;
  readonly topic: string | null;

  /** A message event carrying the parsed payload. */
  constructor(data: T, id: string | null, topic: string | null = null) {
    super('message');
    this.data = data;
    this.id = id;
    this.topic = topic;
  }
}

/** `subscriptionerror`: the server refused (or dropped) a topic this client wanted. */
export class WSSubscriptionErrorEvent extends Event {
  readonly topic: string;
  /** The server's error code (`handler_error`, `no_route`, ...). */
  readonly code: string;
  /** The server's reason, e.g. the `$subscribe` handler's RAISE text. */
  readonly message: string;

  /** A refusal of `topic`; the topic has been dropped from the wanted set. */
  constructor(topic: string, code: string, message: string) {
    super('subscriptionerror');
    this.topic = topic;
    this.code = code;
    this.message = message;
  }
}

/** What a presence message says happened. */
export type PresenceKind = 'join' | 'leave';

/** `presence`: a user's first connection joined a topic, or their last one left it. */
export class WSPresenceEvent extends Event {
  readonly presence: PresenceKind;
  readonly topic: string;
  readonly userId: string;
  /** The v1 cursor of the presence message (null in plain mode). */
  readonly id: string | null;

  /** A join or leave of `userId` on `topic`. */
  constructor(presence: PresenceKind, topic: string, userId: string, id: string | null) {
    super('presence');
    this.presence = presence;
    this.topic = topic;
    this.userId = userId;
    this.id = id;
  }
}

/** `reply`: a route handler's result; `matched` says whether a send() was waiting for it. */
export class WSReplyEvent<T = unknown> extends Event {
  readonly requestId: string | null;
  readonly data: T;
  readonly matched: boolean;

  /** A reply event for request `requestId`. */
  constructor(requestId: string | null, data: T, matched: boolean) {
    super('reply');
    this.requestId = requestId;
    this.data = data;
    this.matched = matched;
  }
}

/** `reset`: the server could not resume from our cursor; refetch your state. */
export class WSResetEvent extends Event {
  readonly id: string | null;

  /** A reset event; `id` is the cursor kept from now on. */
  constructor(id: string | null) {
    super('reset');
    this.id = id;
  }
}

/** `close`: a socket ended (also one that never opened: `wasOpen` false). */
export class WSCloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  readonly wasOpen: boolean;
  readonly willReconnect: boolean;
  /** Milliseconds until the next attempt, or null when none is scheduled. */
  readonly delay: number | null;

  /** A close event describing what ended and what happens next. */
  constructor(init: { code: number; reason: string; wasClean: boolean; wasOpen: boolean;
                      willReconnect: boolean; delay: number | null }) {
    super('close');
    this.code = init.code;
    this.reason = init.reason;
    this.wasClean = init.wasClean;
    this.wasOpen = init.wasOpen;
    this.willReconnect = init.willReconnect;
    this.delay = init.delay;
  }
}

/** What went wrong, for an `error` event. */
export type WSErrorKind =
  | 'token'    // getToken() threw or rejected
  | 'frame'    // a frame that is not JSON, or not a valid envelope
  | 'server'   // an error frame not tied to a pending send()
  | 'socket';  // the WebSocket could not even be constructed

/** `error`: something failed; the client keeps going unless `kind` is 'socket'. */
export class WSErrorEvent extends Event {
  readonly kind: WSErrorKind;
  readonly error: unknown;
  /** The server's error code (kind 'server'). */
  readonly code: string | null;
  readonly requestId: string | null;
  /** The offending frame (kind 'frame'). */
  readonly raw: string | null;

  /** An error event; only the fields that apply to `kind` are set. */
  constructor(kind: WSErrorKind, init: { error?: unknown; code?: string | null;
                                         requestId?: string | null; raw?: string | null }) {
    super('error');
    this.kind = kind;
    this.error = init.error ?? null;
    this.code = init.code ?? null;
    this.requestId = init.requestId ?? null;
    this.raw = init.raw ?? null;
  }

  /** A readable description, whatever the kind. */
  get message(): string {
    if (this.error instanceof Error) return this.error.message;
    return this.error == null ? this.kind : String(this.error);
  }
}

/** `statechange`: the connection state changed (what the React hook shows). */
export class WSStateEvent extends Event {
  readonly state: ConnectionState;
  readonly previous: ConnectionState;

  /** A state change from `previous` to `state`. */
  constructor(state: ConnectionState, previous: ConnectionState) {
    super('statechange');
    this.state = state;
    this.previous = previous;
  }
}

/** Event names to event types, for typed addEventListener. */
export interface WSClientEventMap {
  open: Event;
  message: WSMessageEvent;
  reply: WSReplyEvent;
  reset: WSResetEvent;
  close: WSCloseEvent;
  error: WSErrorEvent;
  statechange: WSStateEvent;
  subscriptionerror: WSSubscriptionErrorEvent;
  presence: WSPresenceEvent;
}
