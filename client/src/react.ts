/*
 * useWebSocketClient: the React hook over WSClient.
 *
 * Every component that uses the same URL shares one WSClient (ref-counted:
 * the first user creates and opens it, the last one to unmount closes it).
 * The hook subscribes once per mount and per URL; re-rendering with a new
 * inline onMessage or getToken does no work beyond storing the latest one in
 * a ref, so no listener is re-added and no socket is touched.  This is what
 * the seed article's hook (an effect with no dependency list) got wrong.
 *
 * useTopic and usePresence take the client that useWebSocketClient returned
 * (null until its first effect ran: they wait for it).  Components that want
 * the same topic of one client share its subscription, ref-counted like the
 * client itself: the first one subscribes, the last one to unmount (a tick
 * later, for StrictMode) unsubscribes.
 */

import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { GetToken, TokenRequest, WSClient, WSClientOptions } from './client.js';
import {
  ConnectionState, WSMessageEvent, WSPresenceEvent, WSSubscriptionErrorEvent,
} from './events.js';
import { assertTopic, isPresenceMessage } from './topics.js';

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
  /**
   * Where the shared client's first connect starts: what `ws_cursor()`
   * returned with the state this component shows (WSClientOptions.since;
   * overrides `options.since`).  Read, like `options`, only by the component
   * that creates the shared client: mount it once the state has loaded.
   */
  since?: string | null;
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
  { url, getToken, onMessage, since, options }: UseWebSocketClientArgs<T>):
    UseWebSocketClientResult {
  const onMessageRef = useRef(onMessage);
  const tokenSource = useRef<TokenSource>({ current: getToken }).current;
  useIsomorphicLayoutEffect(() => {
    onMessageRef.current = onMessage;
    tokenSource.current = getToken;
  }, [onMessage, getToken]);

  const [client, setClient] = useState<WSClient | null>(null);
  const [state, setState] = useState<ConnectionState>('idle');

  useEffect(() => {
    const c = acquireClient(url, tokenSource,
                            since === undefined ? options : { ...options, since });
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
    // options and since are read when the shared client is created, on purpose
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [url]);

  return { client, state };
}

/* ---- topics ---- */

/** How many mounted hooks want each topic, per client. */
const topicUsers = new WeakMap<WSClient, Map<string, number>>();

/** One more user of `topic` on `client`; the first one subscribes. */
export function acquireTopic(client: WSClient, topic: string): void {
  assertTopic(topic);
  let counts = topicUsers.get(client);
  if (!counts) topicUsers.set(client, counts = new Map());
  const n = counts.get(topic) ?? 0;
  counts.set(topic, n + 1);
  // a refusal shows as `subscriptionerror`; nothing to do with the promise here
  if (n === 0 || !client.topics.includes(topic)) client.subscribe(topic).catch(() => undefined);
}

/** One user less; when none is left a tick later (StrictMode remounts), unsubscribe. */
export function releaseTopic(client: WSClient, topic: string): void {
  const counts = topicUsers.get(client);
  const n = counts?.get(topic) ?? 0;
  if (!counts || n === 0) return;
  counts.set(topic, n - 1);
  if (n > 1) return;
  setTimeout(() => {
    if ((counts.get(topic) ?? 0) > 0) return;
    counts.delete(topic);
    client.unsubscribe(topic).catch(() => undefined);
  }, 0);
}

/**
 * Whether a message belongs to `topic`: the envelope's topic when the bridge
 * names it; else the data's own `topic` field when it has one; else yes (a
 * message cannot say which topic it came from).  Presence messages never
 * match: usePresence has them.
 */
export function messageMatchesTopic(topic: string, e: WSMessageEvent): boolean {
  if (isPresenceMessage(e.data)) return false;
  if (e.topic != null) return e.topic === topic;
  const d = e.data as Record<string, unknown> | null;
  if (d !== null && typeof d === 'object' && typeof d.topic === 'string') return d.topic === topic;
  return true;
}

/** What useTopic() takes besides the client and the topic. */
export interface UseTopicOptions<T = unknown> {
  /** Called with each message of the topic; the latest one given is used. */
  onMessage?: (data: T, event: WSMessageEvent<T>) => void;
  /** Which messages are the topic's (default: messageMatchesTopic); the latest one is used. */
  match?: (event: WSMessageEvent<T>) => boolean;
}

/** What useTopic() returns. */
export interface UseTopicResult {
  /** The server's refusal of this topic, if it refused it (reset when the topic changes). */
  error: WSSubscriptionErrorEvent | null;
}

/**
 * Subscribe `client` to `topic` while this component is mounted (none when
 * either is null) and pass the topic's messages to onMessage.  Re-rendering
 * does no work; a new topic unsubscribes the old one.  An invalid topic name
 * throws a TypeError.
 */
export function useTopic<T = unknown>(client: WSClient | null, topic: string | null | undefined,
                                      { onMessage, match }: UseTopicOptions<T> = {}):
    UseTopicResult {
  if (topic != null) assertTopic(topic);
  const onMessageRef = useRef(onMessage);
  const matchRef = useRef(match);
  useIsomorphicLayoutEffect(() => {
    onMessageRef.current = onMessage;
    matchRef.current = match;
  }, [onMessage, match]);
  const [error, setError] = useState<WSSubscriptionErrorEvent | null>(null);

  useEffect(() => {
    setError(null);
    if (!client || topic == null) return undefined;
    const offMessage = client.on('message', (e) => {
      const ev = e as WSMessageEvent<T>;
      const belongs = matchRef.current ? matchRef.current(ev) : messageMatchesTopic(topic, ev);
      if (belongs) onMessageRef.current?.(ev.data, ev);
    });
    const offError = client.on('subscriptionerror', (e) => {
      if (e.topic === topic) setError(e);
    });
    acquireTopic(client, topic);
    return () => {
      offMessage();
      offError();
      releaseTopic(client, topic);
    };
  }, [client, topic]);

  return { error };
}

/** What usePresence() takes besides the client and the topic. */
export interface UsePresenceOptions {
  /**
   * Who is there already: called when the socket opens (and after a v1
   * reset), e.g. `(t) => client.send('who_is_here', {topic: t})` with a route
   * handler over ws_presence(); join/leave messages that arrive meanwhile are
   * applied on top.  The latest one given is used.
   */
  seed?: (topic: string) => Iterable<string> | Promise<Iterable<string>>;
}

const NOBODY: ReadonlySet<string> = new Set();

/**
 * The users present on `topic` (which must be marked with ws_topic_presence):
 * built from the join/leave messages received since subscribing, plus what
 * `seed` returns.  Subscribes like useTopic while mounted.  A new Set on every
 * change, so it can be a dependency of other hooks.
 */
export function usePresence(client: WSClient | null, topic: string | null | undefined,
                            { seed }: UsePresenceOptions = {}): ReadonlySet<string> {
  if (topic != null) assertTopic(topic);
  const seedRef = useRef(seed);
  useIsomorphicLayoutEffect(() => {
    seedRef.current = seed;
  }, [seed]);
  const [users, setUsers] = useState<ReadonlySet<string>>(NOBODY);

  useEffect(() => {
    setUsers(NOBODY);
    if (!client || topic == null) return undefined;
    const tracker = new PresenceTracker((set) => setUsers(set));
    const seedNow = () => {
      const fn = seedRef.current;
      if (fn) tracker.seed(() => fn(topic));
    };
    const offPresence = client.on('presence', (e: WSPresenceEvent) => {
      if (e.topic === topic) tracker.apply(e.presence, e.userId);
    });
    const offOpen = client.on('open', seedNow);
    const offReset = client.on('reset', () => {
      tracker.clear();
      seedNow();
    });
    acquireTopic(client, topic);
    if (client.state === 'open') seedNow();
    return () => {
      tracker.stopped = true;
      offPresence();
      offOpen();
      offReset();
      releaseTopic(client, topic);
    };
  }, [client, topic]);

  return users;
}

/** The set of present users, with seeding that lets live join/leave win. */
class PresenceTracker {
  stopped = false;
  private present = new Set<string>();
  /** join/leave since the running seed call started (null: none running). */
  private journal: Array<[string, string]> | null = null;
  private seedCall = 0;

  /** `publish` gets a new Set on every change. */
  constructor(private readonly publish: (users: ReadonlySet<string>) => void) {}

  /** A join or leave message. */
  apply(kind: string, user: string): void {
    this.journal?.push([kind, user]);
    if (kind === 'join') this.present.add(user);
    else this.present.delete(user);
    this.emit();
  }

  /** Forget everyone (a v1 reset: joins and leaves may have been missed). */
  clear(): void {
    this.present.clear();
    this.emit();
  }

  /** Replace the set with what `fetch` returns, then replay joins/leaves since the call. */
  seed(fetch: () => Iterable<string> | Promise<Iterable<string>>): void {
    const call = ++this.seedCall;
    this.journal = [];
    Promise.resolve().then(fetch).then((users) => {
      if (this.stopped || call !== this.seedCall || !this.journal) return;
      const next = new Set(users);
      for (const [kind, user] of this.journal) {
        if (kind === 'join') next.add(user);
        else next.delete(user);
      }
      this.journal = null;
      this.present = next;
      this.emit();
    }, () => {
      if (call === this.seedCall) this.journal = null;  // keep what the messages built
    });
  }

  /** Publish a copy (React needs a new object to see a change). */
  private emit(): void {
    if (!this.stopped) this.publish(new Set(this.present));
  }
}

export default useWebSocketClient;
