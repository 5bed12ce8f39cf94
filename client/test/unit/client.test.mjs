// WSClient against a fake WebSocket: connecting, reconnecting (one timer per
// close, backoff, jitter, reset), token refresh on refusal, offline pause,
// the v1 cursor, dedupe, reset, reply matching, and bad frames.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { WSClient, WSRequestError } from '../../dist/index.js';
import { FakeOnline, FakeWebSocket, flush, record } from './fake.mjs';

const URL_ = 'ws://bridge.test/';
// random() just under 1: every delay is its ceiling minus one millisecond
const NEAR_ONE = () => 0.999999;

/** A client on fake sockets whose getToken records each call. */
function makeClient(extra = {}) {
  const calls = [];
  const online = extra.online ?? new FakeOnline(true);
  const client = new WSClient({
    url: URL_,
    WebSocket: FakeWebSocket,
    online,
    random: NEAR_ONE,
    getToken: async (req) => {
      calls.push(req);
      return `tok${calls.length}`;
    },
    ...extra,
  });
  return { client, calls, online };
}

/** Open the client and let its first socket start. */
async function started(extra) {
  const c = makeClient(extra);
  c.client.open();
  await flush();
  return c;
}

/** Advance fake time, then let any getToken() promise settle. */
async function advance(t, ms) {
  t.mock.timers.tick(ms);
  await flush();
}

beforeEach(() => FakeWebSocket.reset());

/* ---- connecting ---- */

test('open() asks getToken and connects with ?token= and the v1 subprotocol', async () => {
  const { client, calls } = await started();
  assert.equal(FakeWebSocket.instances.length, 1);
  const ws = FakeWebSocket.last();
  assert.equal(ws.url.searchParams.get('token'), 'tok1');
  assert.equal(ws.url.searchParams.has('since'), false);
  assert.deepEqual(ws.protocols, ['wsnotify.v1']);
  assert.deepEqual(calls, [{ refresh: false, attempt: 0 }]);
  assert.equal(client.state, 'connecting');
  ws.accept();
  assert.equal(client.state, 'open');
  assert.equal(client.protocol, 'wsnotify.v1');
  client.close();
});

test('plain mode asks for no subprotocol and never sends since', async () => {
  const { client } = await started({ protocol: 'plain', since: '12' });
  assert.deepEqual(FakeWebSocket.last().protocols, []);
  assert.equal(FakeWebSocket.last().url.searchParams.has('since'), false);
  client.close();
});

test('open() twice makes one socket', async () => {
  const { client } = await started();
  client.open();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  client.close();
});

test('open() after close() makes a new socket (seed bug: it never did)', async () => {
  const { client } = await started();
  FakeWebSocket.last().accept();
  client.close();
  assert.equal(client.state, 'closed');
  client.open();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  FakeWebSocket.last().accept();
  assert.equal(client.state, 'open');
  client.close();
});

test('http:// URLs become ws:// and other query parameters are kept', async () => {
  const { client } = await started({ url: 'http://bridge.test/feed?room=7' });
  const u = FakeWebSocket.last().url;
  assert.equal(u.protocol, 'ws:');
  assert.equal(u.searchParams.get('room'), '7');
  client.close();
});

test('getToken is called before every connect, so each socket gets the newest token', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, calls } = await started();
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1011);
  await advance(t, 500);
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1011);
  await advance(t, 1000);
  assert.equal(FakeWebSocket.instances.length, 3);
  assert.deepEqual(FakeWebSocket.instances.map((w) => w.url.searchParams.get('token')),
                   ['tok1', 'tok2', 'tok3']);
  assert.equal(calls.length, 3);
  client.close();
});

/* ---- reconnecting ---- */

test('one close schedules exactly one reconnect, after the delay, not at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  FakeWebSocket.last().accept();
  const closes = record(client, 'close');
  FakeWebSocket.last().drop(1001, 'going away', true);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1, 'no immediate reconnect');
  assert.equal(client.state, 'reconnecting');
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, 1001);
  assert.equal(closes[0].willReconnect, true);
  assert.equal(closes[0].delay, 499);
  await advance(t, 498);
  assert.equal(FakeWebSocket.instances.length, 1);
  await advance(t, 1);
  assert.equal(FakeWebSocket.instances.length, 2);
  FakeWebSocket.last().accept();
  await advance(t, 60000);
  assert.equal(FakeWebSocket.instances.length, 2, 'still exactly one new socket');
  client.close();
});

test('the backoff doubles per failure up to the 30 s cap', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  const delays = [];
  client.addEventListener('close', (e) => delays.push(e.delay));
  for (let i = 0; i < 9; i++) {
    FakeWebSocket.last().accept();
    FakeWebSocket.last().drop(1011);
    await advance(t, delays[delays.length - 1]);
  }
  assert.deepEqual(delays, [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  assert.equal(FakeWebSocket.instances.length, 10);
  client.close();
});

test('delays use full jitter: random() picks anywhere below the ceiling', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const rolls = [0.1, 0.9, 0.5];
  const { client } = await started({ random: () => rolls.shift() });
  const delays = [];
  client.addEventListener('close', (e) => delays.push(e.delay));
  for (let i = 0; i < 3; i++) {
    FakeWebSocket.last().accept();
    FakeWebSocket.last().drop(1011);
    await advance(t, delays[delays.length - 1]);
  }
  assert.deepEqual(delays, [50, 900, 1000]);
  client.close();
});

test('a connection open for 10 s resets the backoff; a shorter one does not', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  const delays = [];
  client.addEventListener('close', (e) => delays.push(e.delay));
  for (let i = 0; i < 3; i++) {          // three quick failures: 499, 999, 1999
    FakeWebSocket.last().accept();
    FakeWebSocket.last().drop(1011);
    await advance(t, delays[delays.length - 1]);
  }
  FakeWebSocket.last().accept();
  await advance(t, 9999);                 // not yet stable
  FakeWebSocket.last().drop(1011);
  assert.equal(delays[3], 3999);
  await advance(t, 3999);
  FakeWebSocket.last().accept();
  await advance(t, 10000);                // stable now
  FakeWebSocket.last().drop(1011);
  assert.equal(delays[4], 499);
  client.close();
});

test('close() stops reconnecting for good', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1011);
  client.close();
  await advance(t, 120000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(client.state, 'closed');
});

test('close() while getToken is pending makes no socket when the token arrives', async () => {
  let release;
  const client = new WSClient({
    url: URL_, WebSocket: FakeWebSocket, online: null,
    getToken: () => new Promise((r) => { release = r; }),
  });
  client.open();
  await flush();
  client.close();
  release('late');
  await flush();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(client.state, 'closed');
});

test('close() closes the socket with 1000 and emits a final close event', async () => {
  const { client } = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const closes = record(client, 'close');
  client.close();
  assert.deepEqual(ws.closedBy, { code: 1000, reason: '' });
  assert.equal(closes.length, 1);
  assert.equal(closes[0].willReconnect, false);
});

test('events from a replaced socket are ignored', async () => {
  const { client } = await started({ protocol: 'plain' });
  const old = FakeWebSocket.last();
  const oldOnMessage = old.onmessage;
  old.accept('');
  client.close();
  client.open();
  await flush();
  const messages = record(client, 'message');
  oldOnMessage?.({ data: '{"stale":true}' });
  old.deliver({ stale: true });
  assert.equal(messages.length, 0);
  client.close();
});

test('shouldReconnect() returning false ends in state closed', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started({ shouldReconnect: ({ code }) => code !== 4403 });
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(4403, 'banned', true);
  await advance(t, 60000);
  assert.equal(client.state, 'closed');
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('getToken() failing emits error and retries with backoff', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let n = 0;
  const client = new WSClient({
    url: URL_, WebSocket: FakeWebSocket, online: null, random: NEAR_ONE,
    getToken: async () => {
      if (++n === 1) throw new Error('auth server down');
      return 'good';
    },
  });
  const errors = record(client, 'error');
  client.open();
  await flush();
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'token');
  assert.equal(errors[0].message, 'auth server down');
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(client.state, 'reconnecting');
  await advance(t, 499);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.last().url.searchParams.get('token'), 'good');
  client.close();
});

test('an upgrade that hangs past connectTimeout is abandoned and retried', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started({ connectTimeout: 3000 });
  const closes = record(client, 'close');
  const hung = FakeWebSocket.last();
  await advance(t, 2999);
  assert.equal(closes.length, 0);
  await advance(t, 1);
  assert.notEqual(hung.closedBy, null, 'the hung socket was closed');
  assert.equal(closes.length, 1);
  assert.equal(closes[0].wasOpen, false);
  await advance(t, 0);
  assert.equal(FakeWebSocket.instances.length, 2);
  FakeWebSocket.last().accept();
  await advance(t, 60000);
  assert.equal(client.state, 'open', 'an open socket is not timed out');
  assert.equal(FakeWebSocket.instances.length, 2);
  client.close();
});

/* ---- refused upgrades and expired tokens ---- */

test('a refused upgrade (1006 before open) gets a fresh token at once, only once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, calls } = await started();
  const closes = record(client, 'close');
  FakeWebSocket.last().drop(1006);             // 401: the browser only sees 1006
  assert.equal(closes[0].wasOpen, false);
  assert.equal(closes[0].delay, 0);
  await advance(t, 0);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.deepEqual(calls[1], { refresh: true, attempt: 0 });
  assert.equal(FakeWebSocket.last().url.searchParams.get('token'), 'tok2');
  FakeWebSocket.last().drop(1006);             // refused again: now back off
  assert.equal(closes[1].delay, 499);
  await advance(t, 498);
  assert.equal(FakeWebSocket.instances.length, 2);
  await advance(t, 1);
  assert.equal(FakeWebSocket.instances.length, 3);
  assert.equal(calls[2].refresh, false);
  FakeWebSocket.last().drop(1006);
  assert.equal(closes[2].delay, 999, 'still backing off, no second free retry');
  client.close();
});

test('after a successful open the fresh-token retry is available again', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, calls } = await started();
  FakeWebSocket.last().drop(1006);
  await advance(t, 0);
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1011);
  await advance(t, 499);
  FakeWebSocket.last().drop(1006);             // refused: token went bad meanwhile
  await advance(t, 0);
  assert.equal(FakeWebSocket.instances.length, 4);
  assert.equal(calls[3].refresh, true);
  client.close();
});

test('close 4001 (token expired) reconnects at once with a fresh token', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, calls } = await started();
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(4001, 'token expired', true);
  await advance(t, 0);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(calls[1].refresh, true);
  client.close();
});

/* ---- offline ---- */

test('offline at open(): no attempt until the online event', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const online = new FakeOnline(false);
  const { client, calls } = await started({ online });
  assert.equal(client.state, 'offline');
  await advance(t, 60000);
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(calls.length, 0);
  online.set(true);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  client.close();
});

test('going offline cancels the pending reconnect; online reconnects at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, online } = await started();
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1006);
  assert.equal(client.state, 'reconnecting');
  online.set(false);
  assert.equal(client.state, 'offline');
  await advance(t, 60000);
  assert.equal(FakeWebSocket.instances.length, 1, 'paused while offline');
  online.set(true);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2, 'resumed without waiting');
  client.close();
});

test('a socket that closes while offline waits for online', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, online } = await started();
  FakeWebSocket.last().accept();
  online.set(false);
  assert.equal(client.state, 'open', 'an open socket is left alone');
  FakeWebSocket.last().drop(1006);
  assert.equal(client.state, 'offline');
  await advance(t, 60000);
  assert.equal(FakeWebSocket.instances.length, 1);
  online.set(true);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  client.close();
});

test('close() unsubscribes from online events', async () => {
  const online = new FakeOnline(true);
  const { client } = await started({ online });
  assert.equal(online.listeners.size, 1);
  client.close();
  assert.equal(online.listeners.size, 0);
});

/* ---- frames ---- */

test('plain mode: each frame is the JSON payload itself', async () => {
  const { client } = await started({ protocol: 'plain' });
  FakeWebSocket.last().accept('');
  const messages = record(client, 'message');
  FakeWebSocket.last().deliver({ x: 1 });
  FakeWebSocket.last().deliver('[1,2]');
  assert.deepEqual(messages.map((m) => m.data), [{ x: 1 }, [1, 2]]);
  assert.equal(messages[0].id, null);
  client.close();
});

test('a frame that is not JSON emits error, does not throw, and later frames still arrive', async () => {
  const { client } = await started({ protocol: 'plain' });
  FakeWebSocket.last().accept('');
  const messages = record(client, 'message');
  const errors = record(client, 'error');
  assert.doesNotThrow(() => FakeWebSocket.last().deliver('not json {'));
  FakeWebSocket.last().deliver({ ok: true });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'frame');
  assert.equal(errors[0].raw, 'not json {');
  assert.deepEqual(messages.map((m) => m.data), [{ ok: true }]);
  assert.equal(client.state, 'open');
  client.close();
});

test('v1 requested but not agreed by the server: frames are read as plain', async () => {
  const { client } = await started();
  FakeWebSocket.last().accept('');
  assert.equal(client.protocol, 'plain');
  const messages = record(client, 'message');
  FakeWebSocket.last().deliver({ id: 'not-an-envelope', x: 1 });
  assert.deepEqual(messages[0].data, { id: 'not-an-envelope', x: 1 });
  assert.equal(client.lastId, null);
  client.close();
});

test('v1: a message envelope yields its data and id, and the id is kept', async () => {
  const { client } = await started();
  FakeWebSocket.last().accept();
  const messages = record(client, 'message');
  FakeWebSocket.last().deliver({ id: '41', data: { text: 'hi' } });
  assert.deepEqual(messages[0].data, { text: 'hi' });
  assert.equal(messages[0].id, '41');
  assert.equal(client.lastId, '41');
  client.close();
});

test('v1: the last cursor is sent as since on the next connect', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  FakeWebSocket.last().accept();
  FakeWebSocket.last().deliver({ id: '7', data: 1 });
  FakeWebSocket.last().deliver({ id: '12', data: 2 });
  FakeWebSocket.last().drop(1006);
  await advance(t, 499);
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), '12');
  client.close();
});

test('v1: the since option seeds the first connect', async () => {
  const { client } = await started({ since: '99' });
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), '99');
  client.close();
});

// what ws_cursor() returns: epoch, position, xmin, xmax, in-flight xids (docs/protocol.md)
const SNAPSHOT = '0123456789abcdef:42:100:105:101,103';

test('v1: a ws_cursor() value as since starts the first connect as it is', async () => {
  const { client } = await started({ since: SNAPSHOT });
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), SNAPSHOT);
  assert.equal(client.lastId, SNAPSHOT);
  client.close();
});

test('v1: after a ws_cursor() start every message is kept, whatever its id', async () => {
  const { client } = await started({ since: SNAPSHOT });
  const messages = record(client, 'message');
  FakeWebSocket.last().accept();
  // a transaction in flight at the snapshot may have a position below the cursor's
  for (const id of ['40', '43', '44']) FakeWebSocket.last().deliver({ id, data: id });
  assert.deepEqual(messages.map((m) => m.id), ['40', '43', '44']);
  assert.equal(client.duplicatesDropped, 0);
  client.close();
});

test('v1: after a ws_cursor() start, reconnects resume from the last message id', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started({ since: SNAPSHOT });
  FakeWebSocket.last().accept();
  FakeWebSocket.last().deliver({ id: '43', data: 1 });
  FakeWebSocket.last().drop(1006);
  await advance(t, 499);
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), '43');
  assert.equal(client.lastId, '43');
  client.close();
});

test('v1: a reconnect before any message starts from the ws_cursor() value again',
     async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started({ since: SNAPSHOT });
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1006);
  await advance(t, 499);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), SNAPSHOT);
  client.close();
});

test('v1: duplicates (id <= last) are dropped, across a reconnect replay', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  const messages = record(client, 'message');
  FakeWebSocket.last().accept();
  for (const id of ['8', '9', '10']) FakeWebSocket.last().deliver({ id, data: id });
  FakeWebSocket.last().drop(1006);
  await advance(t, 499);
  FakeWebSocket.last().accept();
  // a replay that overlaps what we had, then new ones
  for (const id of ['9', '10', '11', '10', '12']) FakeWebSocket.last().deliver({ id, data: id });
  assert.deepEqual(messages.map((m) => m.id), ['8', '9', '10', '11', '12']);
  assert.equal(client.duplicatesDropped, 3);
  assert.equal(client.lastId, '12');
  client.close();
});

test('v1: reset emits reset, replaces the cursor, and live messages follow', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started({ since: '5' });
  const resets = record(client, 'reset');
  const messages = record(client, 'message');
  FakeWebSocket.last().accept();
  FakeWebSocket.last().deliver({ type: 'reset', id: '900' });
  assert.equal(resets.length, 1);
  assert.equal(resets[0].id, '900');
  assert.equal(client.lastId, '900');
  FakeWebSocket.last().deliver({ id: '901', data: 'live' });
  assert.deepEqual(messages.map((m) => m.data), ['live']);
  FakeWebSocket.last().drop(1006);
  await advance(t, 499);
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), '901');
  client.close();
});

test('v1: an envelope without id or data is an error, not a message', async () => {
  const { client } = await started();
  FakeWebSocket.last().accept();
  const messages = record(client, 'message');
  const errors = record(client, 'error');
  FakeWebSocket.last().deliver({ data: 1 });
  FakeWebSocket.last().deliver('[1]');
  FakeWebSocket.last().deliver({ type: 'from-the-future' });
  assert.equal(messages.length, 0);
  assert.deepEqual(errors.map((e) => e.kind), ['frame', 'frame']);
  client.close();
});

/* ---- send() and replies ---- */

test('send() writes action, body and a request_id, and resolves with the matching reply', async () => {
  const { client } = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const replies = record(client, 'reply');
  const p1 = client.send('add', { a: 1, b: 2 });
  const p2 = client.send('echo', { text: 'x' });
  const [f1, f2] = ws.sentJson();
  assert.equal(f1.action, 'add');
  assert.equal(f1.a, 1);
  assert.equal(f2.action, 'echo');
  assert.notEqual(f1.request_id, f2.request_id);
  // replies in the other order still land on the right promise
  ws.deliver({ type: 'reply', request_id: f2.request_id, data: { echoed: 'x' } });
  ws.deliver({ type: 'reply', request_id: f1.request_id, data: 3 });
  assert.equal(await p1, 3);
  assert.deepEqual(await p2, { echoed: 'x' });
  assert.deepEqual(replies.map((r) => r.matched), [true, true]);
  client.close();
});

test('send() rejects with the error frame code and message; the socket stays open', async () => {
  const { client } = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const p = client.send('nope');
  const { request_id } = ws.sentJson()[0];
  ws.deliver({ type: 'error', request_id, code: 'no_route', message: 'no route for nope' });
  await assert.rejects(p, (err) => err instanceof WSRequestError && err.code === 'no_route' &&
                                   err.message === 'no route for nope' &&
                                   err.requestId === request_id);
  assert.equal(client.state, 'open');
  client.close();
});

test('send() times out with reply_timeout; a late reply is emitted unmatched', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started({ replyTimeout: 2000 });
  const ws = FakeWebSocket.last();
  ws.accept();
  const replies = record(client, 'reply');
  const p = client.send('slow');
  const rejected = assert.rejects(p, (err) => err.code === 'reply_timeout');
  t.mock.timers.tick(2000);
  await rejected;
  ws.deliver({ type: 'reply', request_id: ws.sentJson()[0].request_id, data: 'late' });
  assert.equal(replies.length, 1);
  assert.equal(replies[0].matched, false);
  client.close();
});

test('send() waiting when the socket closes rejects with closed', async () => {
  const { client } = await started();
  FakeWebSocket.last().accept();
  const p = client.send('slow');
  FakeWebSocket.last().drop(1006);
  await assert.rejects(p, (err) => err.code === 'closed');
  client.close();
});

test('send() when not open rejects with not_open; on a plain socket with no_replies', async () => {
  const { client } = await started();
  await assert.rejects(client.send('x'), (err) => err.code === 'not_open');
  FakeWebSocket.last().accept('');
  await assert.rejects(client.send('x'), (err) => err.code === 'no_replies');
  assert.equal(client.post('x', { y: 1 }), true);
  assert.deepEqual(FakeWebSocket.last().sentJson(), [{ y: 1, action: 'x' }]);
  client.close();
});

test('request ids never repeat across reconnects, so an old reply cannot match a new request', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client } = await started();
  FakeWebSocket.last().accept();
  client.send('a').catch(() => {});
  const first = FakeWebSocket.last().sentJson()[0].request_id;
  FakeWebSocket.last().drop(1006);
  await advance(t, 499);
  FakeWebSocket.last().accept();
  client.send('b').catch(() => {});
  assert.notEqual(FakeWebSocket.last().sentJson()[0].request_id, first);
  client.close();
});

test('an error frame no send() waits for is emitted as error kind server', async () => {
  const { client } = await started();
  FakeWebSocket.last().accept();
  const errors = record(client, 'error');
  FakeWebSocket.last().deliver({ type: 'error', code: 'bad_json', message: 'not an object' });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'server');
  assert.equal(errors[0].code, 'bad_json');
  client.close();
});

test('statechange walks connecting -> open -> reconnecting -> connecting -> closed', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const c = makeClient();
  const states = record(c.client, 'statechange');
  c.client.open();
  await flush();
  FakeWebSocket.last().accept();
  FakeWebSocket.last().drop(1011);
  await advance(t, 499);
  c.client.close();
  assert.deepEqual(states.map((s) => s.state),
                   ['connecting', 'open', 'reconnecting', 'connecting', 'closed']);
});

test('options are checked at construction', () => {
  assert.throws(() => new WSClient({ WebSocket: FakeWebSocket }), TypeError);
  assert.throws(() => new WSClient({ url: URL_, protocol: 'v2', WebSocket: FakeWebSocket }),
                TypeError);
  assert.throws(() => new WSClient({ url: URL_, WebSocket: undefined }), TypeError);
});
