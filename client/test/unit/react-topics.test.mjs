// useTopic and usePresence in React 18 (react-test-renderer) on fake sockets:
// subscribe on mount, one shared subscription per topic, unsubscribe on the
// last unmount and on a topic change, no work on re-render, routing of
// messages, refusals, and the presence set from join/leave plus a seed.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import React from 'react';
import TestRenderer from 'react-test-renderer';
import { WSClient } from '../../dist/index.js';
import { usePresence, useTopic } from '../../dist/react.js';
import { FakeWebSocket, flush } from './fake.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;
const h = React.createElement;

/** A client on a fake socket, opened and accepted with v1. */
async function openClient() {
  const client = new WSClient({ url: 'ws://t.test/', WebSocket: FakeWebSocket, online: null });
  client.open();
  await flush();
  FakeWebSocket.last().accept();
  return client;
}

/** The subscribe/unsubscribe actions sent on the current fake socket. */
function actions() {
  return FakeWebSocket.last().sentJson().map((f) => `${f.action} ${f.topic}`);
}

/** Reply to every action not answered yet. */
function replyAll(ws, from = 0) {
  for (const f of ws.sentJson().slice(from)) {
    const key = f.action === 'subscribe' ? 'subscribed' : 'unsubscribed';
    ws.deliver({ type: 'reply', request_id: f.request_id, data: { [key]: f.topic } });
  }
}

/** A component using useTopic, reporting what it got. */
function Topic({ client, topic, onMessage, report }) {
  const r = useTopic(client, topic, { onMessage });
  report?.(r);
  return null;
}

/** A component using usePresence, reporting the set. */
function Presence({ client, topic, seed, report }) {
  const users = usePresence(client, topic, { seed });
  report(users);
  return null;
}

async function render(el) {
  let r;
  await act(async () => { r = TestRenderer.create(el); });
  return r;
}

/** Let the deferred unsubscribe of the last release run. */
const settle = () => act(() => new Promise((resolve) => setTimeout(resolve, 5)));

beforeEach(() => FakeWebSocket.reset());

test('useTopic subscribes on mount, shares the topic, unsubscribes after the last unmount',
     async () => {
  const client = await openClient();
  const two = (second) => h('div', null, h(Topic, { client, topic: 'room:1' }),
                            second ? h(Topic, { client, topic: 'room:1' }) : null);
  const r = await render(two(true));
  assert.deepEqual(actions(), ['subscribe room:1'], 'one subscribe for two components');
  replyAll(FakeWebSocket.last());
  await act(async () => r.update(two(false)));
  await settle();
  assert.deepEqual(actions(), ['subscribe room:1'], 'still in use');
  await act(async () => r.unmount());
  await settle();
  assert.deepEqual(actions(), ['subscribe room:1', 'unsubscribe room:1']);
  assert.deepEqual(client.topics, []);
  client.close();
});

test('useTopic: re-rendering with a new onMessage does no work; a new topic switches', async () => {
  const client = await openClient();
  const ws = FakeWebSocket.last();
  const got = [];
  const el = (topic, tag) => h(Topic, { client, topic, onMessage: (d) => got.push([tag, d]) });
  const r = await render(el('a', 0));
  replyAll(ws);
  let adds = 0;
  const add = client.addEventListener.bind(client);
  client.addEventListener = (...x) => { adds++; return add(...x); };
  for (let i = 1; i <= 3; i++) await act(async () => r.update(el('a', i)));
  assert.equal(adds, 0);
  assert.deepEqual(actions(), ['subscribe a']);
  await act(async () => ws.deliver({ id: '1', data: { n: 1 } }));
  assert.deepEqual(got, [[3, { n: 1 }]], 'the latest onMessage, once');
  await act(async () => r.update(el('b', 4)));
  await settle();
  assert.deepEqual(actions(), ['subscribe a', 'subscribe b', 'unsubscribe a']);
  client.addEventListener = add;
  await act(async () => r.unmount());
  await settle();
  client.close();
});

test('StrictMode mount/unmount/mount sends one subscribe and no unsubscribe', async () => {
  const client = await openClient();
  const r = await render(h(React.StrictMode, null, h(Topic, { client, topic: 's' })));
  await settle();
  assert.deepEqual(actions(), ['subscribe s']);
  await act(async () => r.unmount());
  await settle();
  assert.deepEqual(actions(), ['subscribe s', 'unsubscribe s']);
  client.close();
});

test("useTopic routes by the data's topic field; presence frames are not messages", async () => {
  const client = await openClient();
  const ws = FakeWebSocket.last();
  const got = { a: [], b: [] };
  const r = await render(h('div', null,
    h(Topic, { client, topic: 'a', onMessage: (d) => got.a.push(d) }),
    h(Topic, { client, topic: 'b', onMessage: (d) => got.b.push(d) })));
  await act(async () => {
    ws.deliver({ id: '1', data: { topic: 'a', n: 1 } });
    ws.deliver({ id: '2', data: { topic: 'b', n: 2 } });
    ws.deliver({ id: '3', data: { n: 3 } });                  // says nothing: both get it
    ws.deliver({ id: '4', topic: 'b', data: { n: 4 } });      // the envelope names it
    ws.deliver({ id: '5', data: { presence: 'join', topic: 'a', user_id: 'u' } });
  });
  assert.deepEqual(got.a.map((d) => d.n), [1, 3]);
  assert.deepEqual(got.b.map((d) => d.n), [2, 3, 4]);
  await act(async () => r.unmount());
  await settle();
  client.close();
});

test('useTopic returns the refusal of its topic', async () => {
  const client = await openClient();
  const ws = FakeWebSocket.last();
  let last;
  const r = await render(h(Topic, { client, topic: 'secret', report: (x) => { last = x; } }));
  const [f] = ws.sentJson();
  await act(async () => ws.deliver({ type: 'error', request_id: f.request_id,
                                     code: 'handler_error', message: 'refused' }));
  assert.equal(last.error.topic, 'secret');
  assert.equal(last.error.message, 'refused');
  await act(async () => r.unmount());
  await settle();
  client.close();
});

test('useTopic with a null client or topic does nothing; an invalid name throws', async () => {
  const client = await openClient();
  const r = await render(h('div', null, h(Topic, { client: null, topic: 'x' }),
                           h(Topic, { client, topic: null })));
  assert.deepEqual(actions(), []);
  await act(async () => r.unmount());
  const origError = console.error;
  console.error = () => {};
  try {
    await assert.rejects(render(h(Topic, { client, topic: 'no spaces' })), TypeError);
  } finally {
    console.error = origError;
  }
  client.close();
});

test('usePresence: the set follows join/leave of its topic only', async () => {
  const client = await openClient();
  const ws = FakeWebSocket.last();
  let users;
  const r = await render(h(Presence, { client, topic: 'room:1', report: (u) => { users = u; } }));
  assert.deepEqual(actions(), ['subscribe room:1']);
  assert.deepEqual([...users], []);
  const p = (kind, user, topic = 'room:1') => ({ data: { presence: kind, topic, user_id: user } });
  await act(async () => {
    ws.deliver({ id: '1', ...p('join', 'alice') });
    ws.deliver({ id: '2', ...p('join', 'bob') });
    ws.deliver({ id: '3', ...p('join', 'carol', 'room:2') });
  });
  assert.deepEqual([...users].sort(), ['alice', 'bob']);
  const before = users;
  await act(async () => ws.deliver({ id: '4', ...p('leave', 'alice') }));
  assert.deepEqual([...users], ['bob']);
  assert.notEqual(users, before, 'a new Set on change');
  await act(async () => r.unmount());
  await settle();
  client.close();
});

test('usePresence seeds from `seed` and lets join/leave received meanwhile win', async () => {
  const client = await openClient();
  const ws = FakeWebSocket.last();
  let users;
  let answer;
  const seeded = [];
  const seed = (topic) => {
    seeded.push(topic);
    return new Promise((resolve) => { answer = resolve; });
  };
  const r = await render(h(Presence, { client, topic: 'room:1', seed,
                                       report: (u) => { users = u; } }));
  assert.deepEqual(seeded, ['room:1']);
  await act(async () => {
    ws.deliver({ id: '1', data: { presence: 'join', topic: 'room:1', user_id: 'dave' } });
    ws.deliver({ id: '2', data: { presence: 'leave', topic: 'room:1', user_id: 'erin' } });
  });
  await act(async () => answer(['erin', 'frank']));
  assert.deepEqual([...users].sort(), ['dave', 'frank']);
  // a reset forgets everyone and seeds again
  await act(async () => ws.deliver({ type: 'reset', id: '9' }));
  assert.deepEqual(seeded, ['room:1', 'room:1']);
  await act(async () => answer(['gina']));
  assert.deepEqual([...users], ['gina']);
  await act(async () => r.unmount());
  await settle();
  client.close();
});
