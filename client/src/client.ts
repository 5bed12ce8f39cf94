/*
 * WSClient: a browser WebSocket client for wsnotify-bridge.
 *
 * It fixes what the seed article's client got wrong: open() after a close
 * really opens a new socket; one close schedules exactly one reconnect; the
 * backoff is exponential with full jitter, capped, and reset once a
 * connection has been stable; a frame that is not JSON emits `error` instead
 * of throwing.  On top of that it speaks wsnotify.v1 (docs/protocol.md):
 * it keeps the last cursor, resumes with `?since=`, drops duplicates,
 * reports resets, and matches replies to send() by request_id.
 *
 * Every socket gets its own handlers, and each handler first checks that its
 * socket is still the current one, so late events from an old socket can
 * never disturb a new one.  A generation counter does the same for the
 * asynchronous getToken() call.
 */

import { BackoffOptions, backoffDelay, resolveBackoff } from './backoff.js';
import { isDuplicate } from './cursor.js';
import { WSRequestError } from './errors.js';
import {
  ConnectionState, WSClientEventMap, WSCloseEvent, WSErrorEvent, WSErrorKind, WSMessageEvent,
  WSReplyEvent, WSResetEvent, WSStateEvent,
} from './events.js';

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
  /** A cursor to resume from on the first connect (e.g. saved in sessionStorage). */
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

  /** The last v1 cursor received (sent as `since` on reconnect). */
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
    return u.toString();
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
      // binary frames (send_ws_binary) are passed on as they are
      this.dispatchEvent(new WSMessageEvent(ev.data, null));
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
    else this.dispatchEvent(new WSMessageEvent(frame, null));
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
        this.handleData(String(f.id), f.data);
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
  private handleData(id: string, data: unknown): void {
    if (isDuplicate(id, this.cursor)) {
      this.dropped++;
      return;
    }
    this.cursor = id;
    this.dispatchEvent(new WSMessageEvent(data, id));
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
    this.emitError('server', { error: new WSRequestError(code, message, requestId), code,
                               requestId });
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
