// A fake WebSocket and online source for the unit tests: every socket the
// client creates is recorded, and the test plays the server's part.

/** A WebSocket stand-in that the test drives by hand. */
export class FakeWebSocket {
  static instances = [];

  /** Record the socket like a browser would start it: CONNECTING. */
  constructor(url, protocols) {
    this.url = new URL(url);
    this.protocols = protocols;
    this.readyState = 0;
    this.protocol = '';
    this.binaryType = 'blob';
    this.sent = [];
    this.closedBy = null;
    this.onopen = this.onclose = this.onmessage = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }

  /** The client sends a frame. */
  send(data) {
    if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
    this.sent.push(data);
  }

  /** The client closes the socket. */
  close(code, reason) {
    this.closedBy = { code, reason };
    this.readyState = 3;
  }

  /** Server: accept the upgrade, agreeing to `protocol` ('' for none). */
  accept(protocol = 'wsnotify.v1') {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen?.({ type: 'open' });
  }

  /** Server: send a text frame (objects are JSON-encoded). */
  deliver(frame) {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }

  /** Server or network: the socket ends (refused upgrades look like 1006 before open). */
  drop(code = 1006, reason = '', wasClean = false) {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean });
  }

  /** The frames the client sent, parsed. */
  sentJson() {
    return this.sent.map((s) => JSON.parse(s));
  }

  /** The last socket created. */
  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  /** Forget every socket (between tests). */
  static reset() {
    FakeWebSocket.instances = [];
  }
}

/** An online source the test switches by hand. */
export class FakeOnline {
  constructor(online = true) {
    this.online = online;
    this.listeners = new Set();
  }

  isOnline() {
    return this.online;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Change the state and fire the event, as the browser does. */
  set(online) {
    this.online = online;
    for (const fn of [...this.listeners]) fn(online);
  }
}

/** Let pending promises (getToken) settle. */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Collect the events of `type` a client emits. */
export function record(client, type) {
  const seen = [];
  client.addEventListener(type, (e) => seen.push(e));
  return seen;
}
