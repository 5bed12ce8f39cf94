/*
 * useWebSocketClient: the React hook over WSClient.
 *
 * Every component that uses the same URL shares one WSClient (ref-counted:
 * the first user creates and opens it, the last one to unmount closes it).
 * The hook subscribes once per mount and per URL; re-rendering with a new
 * inline onMessage or getToken does no work beyond storing the latest one in
 * a ref, so no listener is re-added and no socket is touched.  This is what
 * the seed article's hook (an effect with no dependency list) got wrong.
 */

import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { GetToken, TokenRequest, WSClient, WSClientOptions } from './client.js';
import { ConnectionState, WSMessageEvent } from './events.js';

/** A mutable box holding one subscriber's latest getToken. */
export interface TokenSource {
  current: GetToken | undefined;
}

/** One shared client and who uses it. */
interface Entry {
  client: WSClient;
  users: TokenSource[];
  closeTimer: ReturnType<typeof setTimeout> | null;
}

const registry = new Map<string, Entry>();

// useLayoutEffect warns during server rendering; there, plain useEffect will do.
const useIsomorphicLayoutEffect = typeof window === 'undefined' ? useEffect : useLayoutEffect;

/** Ask the most recently mounted subscriber that has a getToken. */
function sharedGetToken(entry: Entry, req: TokenRequest): ReturnType<GetToken> {
  for (let i = entry.users.length - 1; i >= 0; i--) {
    const fn = entry.users[i].current;
    if (fn) return fn(req);
  }
  return null;
}

/**
 * Take a reference to the shared client for `url`, creating it with
 * `options` when there is none.  Pair every call with releaseClient().
 */
export function acquireClient(url: string, source: TokenSource,
                              options?: Omit<WSClientOptions, 'url' | 'getToken'>): WSClient {
  let entry = registry.get(url);
  if (!entry) {
    const e: Entry = { client: null as unknown as WSClient, users: [], closeTimer: null };
    e.client = new WSClient({ ...(options ?? {}), url, getToken: (req) => sharedGetToken(e, req) });
    registry.set(url, e);
    entry = e;
  }
  if (entry.closeTimer) {
    clearTimeout(entry.closeTimer);
    entry.closeTimer = null;
  }
  entry.users.push(source);
  return entry.client;
}

/**
 * Drop one reference; the last one closes the client.  The close waits one
 * tick so that React's StrictMode unmount/remount does not drop the socket.
 */
export function releaseClient(url: string, source: TokenSource): void {
  const entry = registry.get(url);
  if (!entry) return;
  const i = entry.users.indexOf(source);
  if (i >= 0) entry.users.splice(i, 1);
  if (entry.users.length > 0 || entry.closeTimer) return;
  entry.closeTimer = setTimeout(() => {
    entry.closeTimer = null;
    if (entry.users.length > 0) return;
    registry.delete(url);
    entry.client.close();
  }, 0);
}

/** What useWebSocketClient() takes. */
export interface UseWebSocketClientArgs<T = unknown> {
  /** The bridge's WebSocket URL; one client is shared per URL. */
  url: string;
  /** Called before every connect; the latest one given is used. */
  getToken?: GetToken;
  /** Called with each message's payload; the latest one given is used. */
  onMessage?: (data: T, event: WSMessageEvent<T>) => void;
  /** Client options, used by whichever component creates the shared client. */
  options?: Omit<WSClientOptions, 'url' | 'getToken'>;
}

/** What useWebSocketClient() returns. */
export interface UseWebSocketClientResult {
  /** The shared client (null until the first effect ran). */
  client: WSClient | null;
  /** Its connection state. */
  state: ConnectionState;
}

/** Subscribe this component to the shared client for `url`; returns it and its state. */
export function useWebSocketClient<T = unknown>(
  { url, getToken, onMessage, options }: UseWebSocketClientArgs<T>): UseWebSocketClientResult {
  const onMessageRef = useRef(onMessage);
  const tokenSource = useRef<TokenSource>({ current: getToken }).current;
  useIsomorphicLayoutEffect(() => {
    onMessageRef.current = onMessage;
    tokenSource.current = getToken;
  }, [onMessage, getToken]);

  const [client, setClient] = useState<WSClient | null>(null);
  const [state, setState] = useState<ConnectionState>('idle');

  useEffect(() => {
    const c = acquireClient(url, tokenSource, options);
    setClient(c);
    setState(c.state);
    const offState = c.on('statechange', (e) => setState(e.state));
    const offMessage = c.on('message', (e) =>
      onMessageRef.current?.(e.data as T, e as WSMessageEvent<T>));
    c.open();
    return () => {
      offState();
      offMessage();
      releaseClient(url, tokenSource);
    };
    // options are read when the shared client is created, on purpose
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [url]);

  return { client, state };
}

export default useWebSocketClient;
