/*
 * WSClient: a browser WebSocket client for wsnotify-bridge.
 *
 * It fixes what the seed article's client got wrong: open() after a close
 * really opens a new socket; one close schedules exactly one reconnect; the
 * backoff is exponential with full jitter, capped, and reset once a
 * connection has been stable; a frame that is not JSON emits `error` instead
 * of throwing.  On top of that it speaks wsnotify.v1 (docs/protocol.md):
 * it starts from the `since` cursor it was given (a message id, or what
 * ws_cursor() returned where the application read its state), keeps the last
 * cursor, resumes with `?since=`, drops duplicates, reports resets, and
 * matches replies to send() by request_id.
 *
 * Topics: the client keeps the set of topics the application wants.  Every
 * connect names them in `?topics=` (so the server subscribes them in the
 * connect transaction, and a v1 resume replays what they got meanwhile);
 * subscribe()/unsubscribe() on an open socket use the built-in actions.  A
 * refusal (an error frame naming the topic, or an error reply to the action)
 * drops the topic from the set and emits `subscriptionerror`.
 *
 * Every socket gets its own handlers, and each handler first checks that its
 * socket is still the current one, so late events from an old socket can
 * never disturb a new one.  A generation counter does the same for the
 * asynchronous getToken() call.
 */

import { BackoffOptions, backoffDelay, resolveBackoff } from './backoff.js';
import { decodeBinaryEnvelope } from './binary.js';
import { isDuplicate } from './cursor.js';
import { WSRequestError } from './errors.js';
import {
  ConnectionState, WSClientEventMap, WSCloseEvent, WSErrorEvent, WSErrorKind, WSMessageEvent,
  WSPresenceEvent, WSReplyEvent, WSResetEvent, WSStateEvent, WSSubscriptionErrorEvent,
} from './events.js';
import { assertTopic, isPresenceMessage } from './topics.js';

/** The subprotocol with cursors, resume and replies. */
export const WSNOTIFY_V1 = 'wsnotify.v1';

/** Which protocol to ask for: wsnotify.v1 (default) or plain frames. */
export type Protocol = 'wsnotify.v1' | 'plain';

/** What getToken() is told: `refresh` is true when the last token was refused. */
export interface TokenRequest {
  refresh: boolean;
  /** Consecutive failed attempts so far. */
  attempt: number;
}

/** Returns the JWT for the next connect (null: connect without one). */
export type GetToken = (req: TokenRequest) =>
  string | null | undefined | Promise<string | null | undefined>;

/** Where the client learns whether the page is online (navigator.onLine by default). */
export interface OnlineSource {
  isOnline(): boolean;
  /** Call `listener` on every change; returns the unsubscribe function. */
  subscribe(listener: (online: boolean) => void): () => void;
}

/** The part of the WebSocket API the client uses (so tests can pass a fake). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
}

/** A WebSocket constructor (the global one by default). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** How a socket closed, as far as shouldReconnect() needs to know. */
export interface CloseInfo {
  code: number;
  reason: string;
  wasOpen: boolean;
}

/** Options of a WSClient; only `url` is required. */
export interface WSClientOptions {
  /** ws://, wss://, http(s):// (mapped to ws(s)://), or a path relative to the page. */
  url: string | URL;
  /** Called before every connect; its token goes into `?token=`. */
  getToken?: GetToken;
  /** 'wsnotify.v1' (default) or 'plain'. */
  protocol?: Protocol;
  /** Reconnect pacing; see DEFAULT_BACKOFF. */
  backoff?: Partial<BackoffOptions>;
  /** How long send() waits for its reply, in ms (default 10000). */
  replyTimeout?: number;
  /** How long an upgrade may take before it counts as failed, in ms (default 10000). */
  connectTimeout?: number;
  /**
   * Where the first connect starts (wsnotify.v1 only; plain mode ignores it):
   * what `SELECT ws_cursor()` returned in the transaction that read the
   * application's state ("load, then follow"), or a message id kept from an
   * earlier page (e.g. in sessionStorage).  Opaque: sent as `?since=` as it is.
   * Later connects resume from the last message received instead.
   */
  since?: string | null;
  /** Whether to reconnect after this close (default: always, until close()). */
  shouldReconnect?: (info: CloseInfo) => boolean;
  /** The WebSocket constructor (default: globalThis.WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** The online/offline source (default: navigator.onLine and window events; null: none). */
  online?: OnlineSource | null;
  /** Random numbers in [0, 1) for the jitter (default: Math.random). */
  random?: () => number;
}

/** Close codes after which the token itself is the problem. */
const TOKEN_CLOSE_CODES = new Set([4001]);
const OPEN = 1;
/**
 * How many characters of topic names go into `?topics=` (the bridge refuses
 * a value over 4 KiB with 400); the rest are subscribed by action after open.
 */
const URL_TOPICS_MAX = 4000;
/** Error codes the client makes up itself: the server did not refuse anything. */
const CLIENT_ERROR_CODES = new Set(['closed', 'reply_timeout', 'not_open', 'no_replies']);

/** A send() waiting for its reply. */
interface Pending {
  resolve: (data: unknown) => void;
  reject: (err: WSRequestError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** navigator.onLine plus the window's online/offline events, when there are any. */
export function browserOnlineSource(): OnlineSource | null {
  const g = globalThis as any;
  const nav = g.navigator;
  if (!nav || typeof nav.onLine !== 'boolean' || typeof g.addEventListener !== 'function')
    return null;
  return {
    isOnline: () => nav.onLine !== false,
    subscribe(listener) {
      const on = () => listener(true);
      const off = () => listener(false);
      g.addEventListener('online', on);
      g.addEventListener('offline', off);
      return () => {
        g.removeEventListener('online', on);
        g.removeEventListener('offline', off);
      };
    },
  };
}

/** The reconnecting, resuming WebSocket client. */
export class WSClient extends EventTarget {
  readonly url: string;
  readonly requestedProtocol: Protocol;
  readonly backoff: BackoffOptions;
  readonly replyTimeout: number;
  readonly connectTimeout: number;

  private readonly getToken: GetToken | undefined;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly onlineSource: OnlineSource | null;
  private readonly random: () => number;
  private readonly shouldReconnect: (info: CloseInfo) => boolean;

  private ws: WebSocketLike | null = null;
  private wsOpened = false;
  private negotiated: Protocol | null = null;
  private currentState: ConnectionState = 'idle';
  private cursor: string | null;
  private active = false;
  private generation = 0;
  private attempt = 0;
  private refreshUsed = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private stableTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private unsubscribeOnline: (() => void) | null = null;
  private readonly pending = new Map<string, Pending>();
  private nextRequestId = 1;
  private dropped = 0;
  /** The topics the application wants, in the order first asked for. */
  private readonly wanted = new Set<string>();
  /** The topics named in the current socket's URL. */
  private urlTopics = new Set<string>();
  /** The topics subscribed on the current socket (URL or action). */
  private readonly socketTopics = new Set<string>();
  /** subscribe actions waiting for their reply, by topic. */
  private readonly subscribing = new Map<string, Promise<unknown>>();
  /** Plain mode: replies still expected to our actions, e.g. `subscribed room:1` → 1. */
  private readonly plainReplies = new Map<string, number>();

  /** A client for `options.url`; nothing connects until open(). */
  constructor(options: WSClientOptions) {
    super();
    if (!options || options.url == null || String(options.url) === '')
      throw new TypeError('WSClient: options.url is required');
    this.url = String(options.url);
    this.getToken = options.getToken;
    this.requestedProtocol = options.protocol ?? WSNOTIFY_V1;
    if (this.requestedProtocol !== WSNOTIFY_V1 && this.requestedProtocol !== 'plain')
      throw new TypeError(`WSClient: unknown protocol ${String(this.requestedProtocol)}`);
    this.backoff = resolveBackoff(options.backoff);
    this.replyTimeout = options.replyTimeout ?? 10000;
    this.connectTimeout = options.connectTimeout ?? 10000;
    this.cursor = options.since ?? null;
    const impl = options.WebSocket ?? (globalThis as any).WebSocket;
    if (typeof impl !== 'function')
      throw new TypeError('WSClient: no WebSocket here; pass options.WebSocket');
    this.WebSocketImpl = impl;
    this.onlineSource = options.online === undefined ? browserOnlineSource() : options.online;
    this.random = options.random ?? Math.random;
    this.shouldReconnect = options.shouldReconnect ?? (() => true);
  }

  /** The connection state (also announced by `statechange`). */
  get state(): ConnectionState {
    return this.currentState;
  }

  /**
   * The cursor the next connect resumes from (`?since=`): the `since` option
   * until the first v1 message (or reset) arrives, then the last one's id.
   */
  get lastId(): string | null {
    return this.cursor;
  }

  /** The protocol the server agreed to on the current socket (null when not open). */
  get protocol(): Protocol | null {
    return this.negotiated;
  }

  /** How many duplicate v1 messages were dropped so far. */
  get duplicatesDropped(): number {
    return this.dropped;
  }

  /** The topics this client wants (and names in `?topics=` on every connect). */
  get topics(): string[] {
    return [...this.wanted];
  }

  /** Start connecting (and keep reconnecting until close()); no-op when already started. */
  open(): void {
    if (this.active) return;
    this.active = true;
    this.attempt = 0;
    this.refreshUsed = false;
    this.unsubscribeOnline = this.onlineSource?.subscribe(this.onOnlineChange) ?? null;
    void this.connect(false);
  }

  /** Close the socket, stop reconnecting and fail every pending send(). */
  close(code = 1000, reason = ''): void {
    if (!this.active) return;
    this.active = false;
    this.generation++;
    this.clearTimers();
    this.unsubscribeOnline?.();
    this.unsubscribeOnline = null;
    const ws = this.ws;
    const wasOpen = this.wsOpened;
    this.detach();
    this.failPending('closed', 'the client was closed');
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
      this.dispatchEvent(new WSCloseEvent({ code, reason, wasClean: true, wasOpen,
                                            willReconnect: false, delay: null }));
    }
    this.setState('closed');
  }

  /**
   * Run route `action` with `body` and resolve with the handler's reply.
   * Rejects with WSRequestError: the server's error code, `reply_timeout`,
   * `closed` (the socket closed first), `not_open`, or `no_replies` (plain mode).
   */
  send<T = unknown>(action: string, body: Record<string, unknown> = {},
                    options: { timeout?: number } = {}): Promise<T> {
    const ws = this.ws;
    if (!ws || !this.wsOpened || ws.readyState !== OPEN)
      return Promise.reject(new WSRequestError('not_open', 'the connection is not open'));
    if (this.negotiated !== WSNOTIFY_V1)
      return Promise.reject(new WSRequestError('no_replies',
        'replies need the wsnotify.v1 subprotocol; use post() on a plain connection'));
    const requestId = String(this.nextRequestId++);
    const frame = JSON.stringify({ ...body, action, request_id: requestId });
    const timeout = options.timeout ?? this.replyTimeout;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new WSRequestError('reply_timeout', `no reply within ${timeout} ms`, requestId));
      }, timeout);
      this.pending.set(requestId, { resolve: resolve as (d: unknown) => void, reject, timer });
      try {
        ws.send(frame);
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(requestId);
        reject(new WSRequestError('not_open', String(err), requestId));
      }
    });
  }

  /** Send route `action` with `body` without waiting for a reply; false when not open. */
  post(action: string, body: Record<string, unknown> = {}): boolean {
    const ws = this.ws;
    if (!ws || !this.wsOpened || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify({ ...body, action }));
    return true;
  }

  /**
   * Want `topic`: it is named in `?topics=` on every connect from now on, and
   * on an open socket the `subscribe` action is sent at once.  Resolves with
   * the server's reply (`{subscribed: topic}`) on an open v1 socket, at once
   * with null otherwise (not open: the next connect subscribes it; plain: no
   * replies to match; or the socket closed before the reply).  A refusal
   * rejects with WSRequestError, drops the topic and emits `subscriptionerror`;
   * `reply_timeout` rejects and keeps the topic wanted.
   * Throws a TypeError for an invalid topic name.
   */
  subscribe(topic: string): Promise<unknown> {
    assertTopic(topic);
    this.wanted.add(topic);
    if (!this.isOpenNow()) return Promise.resolve(null);
    if (this.socketTopics.has(topic)) return Promise.resolve({ subscribed: topic });
    return this.subscribing.get(topic) ?? this.requestSubscribe(topic);
  }

  /**
   * Stop wanting `topic`; on an open socket that has it, the `unsubscribe`
   * action is sent.  Resolves with the reply (`{unsubscribed: topic}`) on an
   * open v1 socket, with null otherwise.  Throws a TypeError for an invalid name.
   */
  unsubscribe(topic: string): Promise<unknown> {
    assertTopic(topic);
    this.wanted.delete(topic);
    const onSocket = this.socketTopics.delete(topic) || this.subscribing.has(topic);
    if (!onSocket || !this.isOpenNow()) return Promise.resolve(null);
    if (this.negotiated !== WSNOTIFY_V1) {
      this.postTopicAction('unsubscribe', topic);
      return Promise.resolve(null);
    }
    return this.send('unsubscribe', { topic });
  }

  /** addEventListener that returns its own removal, for hooks and one-liners. */
  on<K extends keyof WSClientEventMap>(type: K,
                                       listener: (ev: WSClientEventMap[K]) => void): () => void {
    const l = listener as EventListener;
    this.addEventListener(type, l);
    return () => this.removeEventListener(type, l);
  }

  /* ---- connecting ---- */

  /** Get a token and start one socket, unless offline or closed meanwhile. */
  private async connect(refresh: boolean): Promise<void> {
    const gen = ++this.generation;
    this.retryTimer = null;
    if (!this.isOnline()) {
      this.setState('offline');
      return;
    }
    this.setState('connecting');
    let token: string | null | undefined = null;
    try {
      if (this.getToken) token = await this.getToken({ refresh, attempt: this.attempt });
    } catch (err) {
      if (gen !== this.generation) return;
      this.emitError('token', { error: err });
      this.retryAfterFailure(false);
      return;
    }
    if (gen !== this.generation || !this.active) return;
    this.startSocket(token ?? null);
  }

  /** Create the socket and wire its handlers to this client. */
  private startSocket(token: string | null): void {
    let ws: WebSocketLike;
    try {
      const protocols = this.requestedProtocol === WSNOTIFY_V1 ? [WSNOTIFY_V1] : [];
      ws = new this.WebSocketImpl(this.connectUrl(token), protocols);
    } catch (err) {
      // A bad URL will not get better by retrying: report it and stop.
      this.emitError('socket', { error: err });
      this.active = false;
      this.unsubscribeOnline?.();
      this.unsubscribeOnline = null;
      this.setState('closed');
      return;
    }
    this.ws = ws;
    this.wsOpened = false;
    this.negotiated = null;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this.ws === ws && this.handleOpen(ws);
    ws.onclose = (ev) => this.ws === ws && this.handleClose(ev);
    ws.onmessage = (ev) => this.ws === ws && this.handleMessage(ev);
    ws.onerror = () => undefined; // a close event always follows; it carries the facts
    // A blackholed network can keep a socket CONNECTING for minutes: give up sooner.
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (this.ws !== ws || this.wsOpened) return;
      ws.close();
      this.handleClose({ code: 1006, reason: 'connect timeout', wasClean: false });
    }, this.connectTimeout);
  }

  /** The URL of the next connect: token, and `since` for a v1 resume. */
  private connectUrl(token: string | null): string {
    const base = (globalThis as any).location?.href;
    const u = base ? new URL(this.url, base) : new URL(this.url);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    if (token) u.searchParams.set('token', token);
    else u.searchParams.delete('token');
    if (this.requestedProtocol === WSNOTIFY_V1 && this.cursor !== null)
      u.searchParams.set('since', this.cursor);
    else u.searchParams.delete('since');
    this.urlTopics = this.topicsForUrl();
    if (this.urlTopics.size > 0) u.searchParams.set('topics', [...this.urlTopics].join(','));
    else u.searchParams.delete('topics');
    return u.toString();
  }

  /** The wanted topics that fit in `?topics=`; the others go by action after open. */
  private topicsForUrl(): Set<string> {
    const out = new Set<string>();
    let length = 0;
    for (const topic of this.wanted) {
      if (length + topic.length + 1 > URL_TOPICS_MAX) break;
      out.add(topic);
      length += topic.length + 1;
    }
    return out;
  }

  /** Whether the page is online (always true without an online source). */
  private isOnline(): boolean {
    return this.onlineSource ? this.onlineSource.isOnline() : true;
  }

  /* ---- socket events ---- */

  /** The upgrade succeeded: learn the protocol, arm the stability timer. */
  private handleOpen(ws: WebSocketLike): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.wsOpened = true;
    this.refreshUsed = false;
    this.negotiated = this.requestedProtocol === WSNOTIFY_V1 && ws.protocol === WSNOTIFY_V1
      ? WSNOTIFY_V1 : 'plain';
    this.stableTimer = setTimeout(() => {
      this.stableTimer = null;
      this.attempt = 0;
    }, this.backoff.stableAfter);
    this.setState('open');
    this.syncTopics();
    this.dispatchEvent(new Event('open'));
  }

  /** The socket ended: fail pending requests, then decide on exactly one reconnect. */
  private handleClose(ev: { code?: number; reason?: string; wasClean?: boolean }): void {
    const wasOpen = this.wsOpened;
    const code = ev.code ?? 1006;
    const reason = ev.reason ?? '';
    this.detach();
    this.failPending('closed', `the connection closed (${code})`);
    const again = this.active && this.shouldReconnect({ code, reason, wasOpen });
    // Refused before the upgrade (a browser only sees 1006) or told the token
    // expired: ask for a fresh token at once, but only once per failure streak.
    const tokenTrouble = !wasOpen || TOKEN_CLOSE_CODES.has(code);
    let delay: number | null = null;
    let refresh = false;
    if (again) {
      if (tokenTrouble && !this.refreshUsed) {
        this.refreshUsed = true;
        refresh = true;
        delay = 0;
      } else {
        delay = backoffDelay(this.attempt++, this.backoff, this.random);
      }
    }
    this.dispatchEvent(new WSCloseEvent({ code, reason, wasClean: ev.wasClean ?? false, wasOpen,
                                          willReconnect: again, delay }));
    if (!this.active) return;  // a close listener called close()
    if (!again) {
      this.stop();
      return;
    }
    this.schedule(delay ?? 0, refresh);
  }

  /** Parse one frame and route it; never throws. */
  private handleMessage(ev: { data: unknown }): void {
    if (typeof ev.data !== 'string') {
      this.handleBinary(ev.data);
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(ev.data);
    } catch (err) {
      this.emitError('frame', { error: err, raw: ev.data });
      return;
    }
    if (this.negotiated === WSNOTIFY_V1) this.handleEnvelope(frame, ev.data);
    else if (this.isPlainTopicRefusal(frame)) this.refuseTopic(frame.topic, frame.error,
                                                                frame.message ?? frame.error);
    else if (this.isPlainTopicReply(frame)) this.dispatchEvent(new WSReplyEvent(null, frame, false));
    else this.emitMessage(frame, null, null);
  }

  /** Plain mode: `{"subscribed": T}` / `{"unsubscribed": T}` answering our own action. */
  private isPlainTopicReply(frame: unknown): boolean {
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return false;
    const keys = Object.keys(frame);
    const value = (frame as Record<string, unknown>)[keys[0]];
    if (keys.length !== 1 || typeof value !== 'string') return false;
    const key = `${keys[0]} ${value}`;
    const n = this.plainReplies.get(key);
    if (!n) return false;
    if (n > 1) this.plainReplies.set(key, n - 1);
    else this.plainReplies.delete(key);
    return true;
  }

  /**
   * A binary frame (send_ws_binary): an ArrayBuffer as it is, or, with
   * wsnotify.v1, its envelope decoded (cursor kept, payload emitted).
   */
  private handleBinary(data: unknown): void {
    if (this.negotiated !== WSNOTIFY_V1 || !(data instanceof ArrayBuffer)) {
      this.dispatchEvent(new WSMessageEvent(data, null));
      return;
    }
    const envelope = decodeBinaryEnvelope(data);
    if (envelope === null) {
      this.emitError('frame', { error: new Error('a v1 binary frame needs the 0x01 envelope') });
      return;
    }
    this.handleData(envelope.id, envelope.data, null);
  }

  /** A message (v1 or plain): emit it, and a presence event when it is one. */
  private emitMessage(data: unknown, id: string | null, topic: string | null): void {
    this.dispatchEvent(new WSMessageEvent(data, id, topic));
    if (isPresenceMessage(data))
      this.dispatchEvent(new WSPresenceEvent(data.presence, data.topic, data.user_id, id));
  }

  /** Plain mode: `{"error": CODE, "topic": T, "message": M}` for a topic we asked for. */
  private isPlainTopicRefusal(frame: unknown):
      frame is { error: string; topic: string; message?: string } {
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return false;
    const f = frame as Record<string, unknown>;
    return typeof f.error === 'string' && typeof f.topic === 'string' &&
      this.wanted.has(f.topic) &&
      Object.keys(f).every((k) => k === 'error' || k === 'topic' || k === 'message');
  }

  /** One wsnotify.v1 envelope: message, reset, reply or error. */
  private handleEnvelope(frame: unknown, raw: string): void {
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this.emitError('frame', { error: new Error('a v1 frame must be a JSON object'), raw });
      return;
    }
    const f = frame as Record<string, unknown>;
    switch (f.type) {
      case undefined:
        if (f.id === undefined || !('data' in f)) {
          this.emitError('frame', { error: new Error('a v1 message needs id and data'), raw });
          return;
        }
        this.handleData(String(f.id), f.data, typeof f.topic === 'string' ? f.topic : null);
        return;
      case 'reset':
        this.cursor = f.id == null ? null : String(f.id);
        this.dispatchEvent(new WSResetEvent(this.cursor));
        return;
      case 'reply':
        this.handleReply(f.request_id, f.data);
        return;
      case 'error':
        this.handleErrorFrame(f);
        return;
      default:
        return; // a frame type from a newer bridge: ignore it
    }
  }

  /** A v1 message: drop it when its cursor is not past the last one, else keep and emit. */
  private handleData(id: string, data: unknown, topic: string | null): void {
    if (isDuplicate(id, this.cursor)) {
      this.dropped++;
      return;
    }
    this.cursor = id;
    this.emitMessage(data, id, topic);
  }

  /** A v1 reply: resolve the matching send(), and emit `reply` either way. */
  private handleReply(rid: unknown, data: unknown): void {
    const requestId = rid == null ? null : String(rid);
    const p = requestId === null ? undefined : this.pending.get(requestId);
    if (p && requestId !== null) {
      clearTimeout(p.timer);
      this.pending.delete(requestId);
      p.resolve(data);
    }
    this.dispatchEvent(new WSReplyEvent(requestId, data, p !== undefined));
  }

  /** A v1 error frame: reject the matching send(), or emit `error` when none waits. */
  private handleErrorFrame(f: Record<string, unknown>): void {
    const requestId = f.request_id == null ? null : String(f.request_id);
    const code = typeof f.code === 'string' ? f.code : 'error';
    const message = typeof f.message === 'string' ? f.message : code;
    const p = requestId === null ? undefined : this.pending.get(requestId);
    if (p && requestId !== null) {
      clearTimeout(p.timer);
      this.pending.delete(requestId);
      p.reject(new WSRequestError(code, message, requestId));
      return;
    }
    if (typeof f.topic === 'string') {
      // a ?topics= refusal, sent right after open
      this.refuseTopic(f.topic, code, message);
      return;
    }
    this.emitError('server', { error: new WSRequestError(code, message, requestId), code,
                               requestId });
  }

  /* ---- topics ---- */

  /** Whether a frame can be sent right now. */
  private isOpenNow(): boolean {
    return this.ws !== null && this.wsOpened && this.ws.readyState === OPEN;
  }

  /** Just opened: the URL's topics are subscribed; subscribe the rest by action. */
  private syncTopics(): void {
    this.socketTopics.clear();
    this.subscribing.clear();
    for (const topic of this.urlTopics) {
      if (this.wanted.has(topic)) this.socketTopics.add(topic);
      else if (this.negotiated === WSNOTIFY_V1)   // unsubscribed while connecting
        this.send('unsubscribe', { topic }).catch(() => undefined);
      else this.postTopicAction('unsubscribe', topic);
    }
    for (const topic of this.wanted)
      if (!this.socketTopics.has(topic)) this.requestSubscribe(topic).catch(() => undefined);
  }

  /** Send the subscribe action for `topic` on the open socket. */
  private requestSubscribe(topic: string): Promise<unknown> {
    if (this.negotiated !== WSNOTIFY_V1) {
      this.postTopicAction('subscribe', topic);
      this.socketTopics.add(topic);
      return Promise.resolve(null);
    }
    const p = this.send('subscribe', { topic }).then((data) => {
      if (this.subscribing.get(topic) === p) this.subscribing.delete(topic);
      if (this.wanted.has(topic)) this.socketTopics.add(topic);
      return data;
    }, (err: WSRequestError) => {
      if (this.subscribing.get(topic) === p) this.subscribing.delete(topic);
      // the socket closed first: still wanted, the next connect subscribes it
      if (err.code === 'closed') return null;
      if (!CLIENT_ERROR_CODES.has(err.code)) this.refuseTopic(topic, err.code, err.message);
      throw err;
    });
    this.subscribing.set(topic, p);
    return p;
  }

  /** Plain mode: send a topic action and expect its reply, so it is not taken for a message. */
  private postTopicAction(action: 'subscribe' | 'unsubscribe', topic: string): void {
    if (!this.post(action, { topic })) return;
    const key = `${action}d ${topic}`;
    this.plainReplies.set(key, (this.plainReplies.get(key) ?? 0) + 1);
  }

  /** The server refused `topic`: stop wanting it and say so. */
  private refuseTopic(topic: string, code: string, message: string): void {
    this.wanted.delete(topic);
    this.socketTopics.delete(topic);
    this.dispatchEvent(new WSSubscriptionErrorEvent(topic, code, message));
  }

  /* ---- reconnecting ---- */

  /** getToken() failed: back off and try again. */
  private retryAfterFailure(refresh: boolean): void {
    if (!this.active) return;
    this.schedule(backoffDelay(this.attempt++, this.backoff, this.random), refresh);
  }

  /** Arm the one reconnect timer (or wait for `online` when offline). */
  private schedule(delay: number, refresh: boolean): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (!this.isOnline()) {
      this.retryTimer = null;
      this.setState('offline');
      return;
    }
    this.setState('reconnecting');
    this.retryTimer = setTimeout(() => void this.connect(refresh), delay);
  }

  /** The page went offline or online. */
  private onOnlineChange = (online: boolean): void => {
    if (!this.active) return;
    if (!online) {
      // Pause: no attempt while offline.  An open socket is left alone; if it
      // dies, handleClose() sees we are offline and waits.
      if (this.retryTimer) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.setState('offline');
      }
      return;
    }
    if (this.currentState === 'offline') {
      this.attempt = 0;
      void this.connect(false);
    }
  };

  /* ---- helpers ---- */

  /** Forget the current socket (its late events are ignored from now on). */
  private detach(): void {
    if (this.stableTimer) clearTimeout(this.stableTimer);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.stableTimer = this.connectTimer = null;
    const ws = this.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => undefined;
    }
    this.ws = null;
    this.wsOpened = false;
    this.negotiated = null;
    this.socketTopics.clear();
    this.subscribing.clear();
    this.plainReplies.clear();
  }

  /** Stop for good without a close() call (shouldReconnect said no). */
  private stop(): void {
    this.active = false;
    this.clearTimers();
    this.unsubscribeOnline?.();
    this.unsubscribeOnline = null;
    this.setState('closed');
  }

  /** Cancel the reconnect and stability timers. */
  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.retryTimer = this.stableTimer = null;
  }

  /** Reject every send() still waiting. */
  private failPending(code: string, message: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new WSRequestError(code, message, id));
    }
    this.pending.clear();
  }

  /** Dispatch an `error` event. */
  private emitError(kind: WSErrorKind, init: ConstructorParameters<typeof WSErrorEvent>[1]): void {
    this.dispatchEvent(new WSErrorEvent(kind, init));
  }

  /** Change state and announce it (only on a real change). */
  private setState(next: ConnectionState): void {
    const prev = this.currentState;
    if (prev === next) return;
    this.currentState = next;
    this.dispatchEvent(new WSStateEvent(next, prev));
  }
}

/** Typed listeners: `client.addEventListener('message', (e) => e.data)`. */
export interface WSClient {
  addEventListener<K extends keyof WSClientEventMap>(
    type: K, listener: (this: WSClient, ev: WSClientEventMap[K]) => any,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
                   options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WSClientEventMap>(
    type: K, listener: (this: WSClient, ev: WSClientEventMap[K]) => any,
    options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
                      options?: boolean | EventListenerOptions): void;
}
