// WSClient topics on a fake WebSocket: the wanted set in ?topics= on every
// connect, the subscribe/unsubscribe actions and their replies, refusals
// (?topics= error frames and action errors) as subscriptionerror, topic-name
// validation, presence events, and the reconcile after a reconnect.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  WSClient, WSRequestError, assertTopic, isPresenceMessage, isValidTopic,
} from '../../dist/index.js';
import { FakeWebSocket, flush, record } from './fake.mjs';

/** A started client on fake sockets (no jitter, no online source). */
async function started(extra = {}) {
  const client = new WSClient({
    url: 'ws://bridge.test/', WebSocket: FakeWebSocket, online: null, random: () => 0,
    getToken: () => 'tok', ...extra,
  });
  client.open();
  await flush();
  return client;
}

/** The ?topics= of a fake socket's URL, split (null when absent). */
function urlTopics(ws) {
  const v = ws.url.searchParams.get('topics');
  return v === null ? null : v.split(',');
}

/** Answer the subscribe/unsubscribe action in `frame` with the server's reply. */
function replyTo(ws, frame) {
  const key = frame.action === 'subscribe' ? 'subscribed' : 'unsubscribed';
  ws.deliver({ type: 'reply', request_id: frame.request_id, data: { [key]: frame.topic } });
}

/** Reconnect: drop the current socket and let the (zero-delay) retry start. */
async function reconnect(t) {
  FakeWebSocket.last().drop(1006, '', false);
  t.mock.timers.tick(1);
  await flush();
  return FakeWebSocket.last();
}

beforeEach(() => FakeWebSocket.reset());

test('topic names: 1-128 of A-Za-z0-9_-.:/@, anything else throws a TypeError saying so', async () => {
  for (const ok of ['a', 'room:1', 'user/alice@example.com', 'x_y-z.v', 'a'.repeat(128)])
    assert.equal(isValidTopic(ok), true, ok);
  for (const bad of ['', 'a'.repeat(129), 'with space', 'comma,list', 'é', 'a?b', null, 7])
    assert.equal(isValidTopic(bad), false, String(bad));
  assert.throws(() => assertTopic('bad topic!'),
                (e) => e instanceof TypeError && /invalid topic name "bad topic!"/.test(e.message) &&
                       /1 to 128/.test(e.message));
  const client = await started();
  FakeWebSocket.last().accept();
  assert.throws(() => client.subscribe('a,b'), TypeError);
  assert.throws(() => client.unsubscribe(''), TypeError);
  assert.deepEqual(FakeWebSocket.last().sent, [], 'nothing sent for an invalid name');
  assert.deepEqual(client.topics, []);
  client.close();
});

test('subscribe() before open: no frame, the topics go into ?topics= of the connect', async () => {
  const client = new WSClient({ url: 'ws://bridge.test/?x=1', WebSocket: FakeWebSocket,
                                online: null, getToken: () => 'tok' });
  assert.equal(await client.subscribe('room:1'), null);
  assert.equal(await client.subscribe('news'), null);
  client.open();
  await flush();
  const ws = FakeWebSocket.last();
  assert.deepEqual(urlTopics(ws), ['room:1', 'news']);
  assert.equal(ws.url.searchParams.get('x'), '1');
  ws.accept();
  assert.deepEqual(ws.sent, [], 'the URL subscribed them: no action needed');
  assert.deepEqual(client.topics, ['room:1', 'news']);
  // already subscribed on this socket: resolves at once, sends nothing
  assert.deepEqual(await client.subscribe('news'), { subscribed: 'news' });
  assert.deepEqual(ws.sent, []);
  client.close();
});

test('the topics value is URL-encoded on the wire', async () => {
  const client = await started();
  client.close();
  await client.subscribe('a/b@c:d');
  client.open();
  await flush();
  const raw = FakeWebSocket.last().url.toString();
  assert.match(raw, /topics=a%2Fb%40c%3Ad(&|$)/);
  client.close();
});

test('subscribe() on an open v1 socket sends the action and resolves with the reply', async () => {
  const client = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const p = client.subscribe('room:7');
  const again = client.subscribe('room:7');
  const frames = ws.sentJson();
  assert.equal(frames.length, 1, 'one action for two calls while it is pending');
  assert.equal(frames[0].action, 'subscribe');
  assert.equal(frames[0].topic, 'room:7');
  assert.ok(frames[0].request_id);
  replyTo(ws, frames[0]);
  assert.deepEqual(await p, { subscribed: 'room:7' });
  assert.deepEqual(await again, { subscribed: 'room:7' });
  assert.deepEqual(client.topics, ['room:7']);
  client.close();
});

test('a refused subscribe action rejects, drops the topic and emits subscriptionerror', async () => {
  const client = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const refusals = record(client, 'subscriptionerror');
  const errors = record(client, 'error');
  const p = client.subscribe('secret');
  const [f] = ws.sentJson();
  ws.deliver({ type: 'error', request_id: f.request_id, code: 'handler_error',
               message: 'subscription to secret refused' });
  await assert.rejects(p, (e) => e instanceof WSRequestError && e.code === 'handler_error');
  assert.equal(refusals.length, 1);
  assert.equal(refusals[0].topic, 'secret');
  assert.equal(refusals[0].code, 'handler_error');
  assert.equal(refusals[0].message, 'subscription to secret refused');
  assert.equal(errors.length, 0, 'not also a generic error');
  assert.deepEqual(client.topics, []);
  client.close();
});

test('?topics= refusal frames (v1 and plain) emit subscriptionerror and drop only that topic',
     async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  for (const protocol of ['wsnotify.v1', 'plain']) {
    FakeWebSocket.reset();
    const client = await started({ protocol });
    client.subscribe('room:1');
    client.subscribe('secret');
    const ws = await reconnect(t);
    assert.deepEqual(urlTopics(ws), ['room:1', 'secret']);
    ws.accept(protocol === 'plain' ? '' : 'wsnotify.v1');
    const refusals = record(client, 'subscriptionerror');
    const messages = record(client, 'message');
    ws.deliver(protocol === 'plain'
      ? { error: 'handler_error', topic: 'secret', message: 'refused by $subscribe' }
      : { type: 'error', code: 'handler_error', topic: 'secret', message: 'refused by $subscribe' });
    assert.deepEqual(refusals.map((e) => [e.topic, e.code, e.message]),
                     [['secret', 'handler_error', 'refused by $subscribe']], protocol);
    assert.equal(messages.length, 0, `${protocol}: not a message`);
    assert.deepEqual(client.topics, ['room:1']);
    const next = await reconnect(t);
    assert.deepEqual(urlTopics(next), ['room:1'], 'the refused topic is not asked again');
    client.close();
  }
});

test('plain mode: an {error, topic} frame for a topic not asked for stays a message', async () => {
  const client = await started({ protocol: 'plain' });
  const ws = FakeWebSocket.last();
  ws.accept('');
  const messages = record(client, 'message');
  const refusals = record(client, 'subscriptionerror');
  ws.deliver({ error: 'x', topic: 'not-mine', message: 'app data' });
  assert.equal(messages.length, 1);
  assert.equal(refusals.length, 0);
  client.close();
});

test('unsubscribe() sends the action for a subscribed topic and drops it from the URL', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const client = await started();
  client.subscribe('a');
  client.subscribe('b');
  const ws = await reconnect(t);
  ws.accept();
  const p = client.unsubscribe('a');
  const [f] = ws.sentJson();
  assert.deepEqual([f.action, f.topic], ['unsubscribe', 'a']);
  replyTo(ws, f);
  assert.deepEqual(await p, { unsubscribed: 'a' });
  assert.equal(await client.unsubscribe('never'), null, 'nothing to do: no frame');
  assert.equal(ws.sentJson().length, 1);
  const next = await reconnect(t);
  assert.deepEqual(urlTopics(next), ['b']);
  client.close();
});

test('unsubscribe() while the subscribe reply is pending leaves the topic unsubscribed', async () => {
  const client = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const sub = client.subscribe('t');
  const unsub = client.unsubscribe('t');
  const [fs, fu] = ws.sentJson();
  assert.deepEqual([fs.action, fu.action], ['subscribe', 'unsubscribe']);
  replyTo(ws, fs);
  replyTo(ws, fu);
  await sub;
  await unsub;
  assert.deepEqual(client.topics, []);
  // and a later subscribe() asks again (the socket no longer has it)
  const later = client.subscribe('t');
  assert.equal(ws.sentJson().length, 3);
  client.close();
  assert.equal(await later, null, 'cut off by close(): null, not a rejection');
});

test('a reconnect names every wanted topic in ?topics= with ?since=, and sends no action',
     async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const client = await started();
  let ws = FakeWebSocket.last();
  ws.accept();
  client.subscribe('room:1');
  replyTo(ws, ws.sentJson()[0]);
  await flush();
  ws.deliver({ id: '41', data: { n: 1 } });
  ws = await reconnect(t);
  assert.deepEqual(urlTopics(ws), ['room:1']);
  assert.equal(ws.url.searchParams.get('since'), '41');
  ws.accept();
  assert.deepEqual(ws.sent, []);
  client.close();
});

test('topics asked for while connecting are subscribed by action once open', async () => {
  const client = await started();
  const ws = FakeWebSocket.last();      // its URL was built before the call
  assert.equal(urlTopics(ws), null);
  assert.equal(await client.subscribe('late'), null);
  ws.accept();
  const [f] = ws.sentJson();
  assert.deepEqual([f.action, f.topic], ['subscribe', 'late']);
  client.close();
});

test('a topic unsubscribed while connecting is unsubscribed by action once open', async () => {
  const client = new WSClient({ url: 'ws://bridge.test/', WebSocket: FakeWebSocket, online: null });
  client.subscribe('gone');
  client.open();
  await flush();
  const ws = FakeWebSocket.last();
  assert.deepEqual(urlTopics(ws), ['gone']);
  client.unsubscribe('gone');
  ws.accept();
  const [f] = ws.sentJson();
  assert.deepEqual([f.action, f.topic], ['unsubscribe', 'gone']);
  client.close();
});

test('a subscribe cut off by a close keeps the topic wanted for the next connect', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const client = await started();
  FakeWebSocket.last().accept();
  const refusals = record(client, 'subscriptionerror');
  const p = client.subscribe('keep');
  const ws = await reconnect(t);
  assert.equal(await p, null, 'resolves with null: the next connect subscribes it');
  assert.equal(refusals.length, 0);
  assert.deepEqual(urlTopics(ws), ['keep']);
  client.close();
});

test('plain mode: subscribe() posts the action and resolves with null', async () => {
  const client = await started({ protocol: 'plain' });
  const ws = FakeWebSocket.last();
  ws.accept('');
  assert.equal(await client.subscribe('p'), null);
  const [f] = ws.sentJson();
  assert.deepEqual(f, { topic: 'p', action: 'subscribe' });
  const messages = record(client, 'message');
  const replies = record(client, 'reply');
  ws.deliver({ subscribed: 'p' });             // the reply to our action: not a message
  ws.deliver({ subscribed: 'p' });             // a second one is: nobody asked for it
  assert.equal(replies.length, 1);
  assert.deepEqual(messages.map((m) => m.data), [{ subscribed: 'p' }]);
  assert.equal(await client.unsubscribe('p'), null);
  assert.deepEqual(ws.sentJson()[1], { topic: 'p', action: 'unsubscribe' });
  client.close();
});

test('topics longer than fit in the URL are subscribed by action after open', async () => {
  const client = new WSClient({ url: 'ws://bridge.test/', WebSocket: FakeWebSocket, online: null });
  const names = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(3, '0')}${'x'.repeat(117)}`);
  for (const n of names) client.subscribe(n);
  client.open();
  await flush();
  const ws = FakeWebSocket.last();
  const inUrl = urlTopics(ws);
  assert.ok(ws.url.searchParams.get('topics').length <= 4000);
  assert.ok(inUrl.length > 0 && inUrl.length < names.length);
  ws.accept();
  const byAction = ws.sentJson().map((f) => f.topic);
  assert.deepEqual([...inUrl, ...byAction], names, 'every topic once, URL or action');
  client.close();
});

test('presence messages emit presence events too (and stay messages)', async () => {
  const client = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const presence = record(client, 'presence');
  const messages = record(client, 'message');
  ws.deliver({ id: '5', data: { presence: 'join', topic: 'room:1', user_id: 'bob' } });
  ws.deliver({ id: '6', data: { presence: 'leave', topic: 'room:1', user_id: 'bob' } });
  ws.deliver({ id: '7', data: { presence: 'maybe', topic: 'room:1', user_id: 'bob' } });
  assert.deepEqual(presence.map((e) => [e.presence, e.topic, e.userId, e.id]),
                   [['join', 'room:1', 'bob', '5'], ['leave', 'room:1', 'bob', '6']]);
  assert.equal(messages.length, 3);
  assert.equal(isPresenceMessage({ presence: 'join', topic: 't', user_id: 'u' }), true);
  assert.equal(isPresenceMessage({ presence: 'join', topic: 't' }), false);
  client.close();
});

test('a v1 envelope that names its topic sets the message event topic', async () => {
  const client = await started();
  const ws = FakeWebSocket.last();
  ws.accept();
  const messages = record(client, 'message');
  ws.deliver({ id: '1', topic: 'room:1', data: { n: 1 } });
  ws.deliver({ id: '2', data: { n: 2 } });
  assert.deepEqual(messages.map((m) => m.topic), ['room:1', null]);
  client.close();
});
