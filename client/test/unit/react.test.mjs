// useWebSocketClient in React 18 (react-test-renderer) on fake sockets: one
// shared client per URL, ref-counted; no work on re-render; the latest
// callbacks are used; the state follows the connection.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import React from 'react';
import TestRenderer from 'react-test-renderer';
import { useWebSocketClient } from '../../dist/react.js';
import { FakeWebSocket, flush } from './fake.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;
const h = React.createElement;
const OPTIONS = { WebSocket: FakeWebSocket, online: null };

/** A component that reports what the hook returned on each render. */
function Probe({ url, getToken, onMessage, report, since, options = OPTIONS }) {
  const result = useWebSocketClient({ url, getToken, onMessage, since, options });
  report?.(result);
  return h('span', null, result.state);
}

/** Render `element`, letting effects and getToken() settle. */
async function render(element) {
  let r;
  await act(async () => {
    r = TestRenderer.create(element);
  });
  await act(flush);
  return r;
}

/** Let the deferred close of the last release run. */
async function settle() {
  await act(() => new Promise((resolve) => setTimeout(resolve, 5)));
}

beforeEach(() => FakeWebSocket.reset());

test('components on one URL share one client and one socket', async () => {
  const seen = [];
  const r = await render(h('div', null,
    h(Probe, { url: 'ws://a.test/', getToken: () => 't', report: (x) => seen.push(x.client) }),
    h(Probe, { url: 'ws://a.test/', getToken: () => 't', report: (x) => seen.push(x.client) })));
  const clients = new Set(seen.filter(Boolean));
  assert.equal(clients.size, 1);
  assert.equal(FakeWebSocket.instances.length, 1);
  await act(async () => r.unmount());
  await settle();
});

test('components on different URLs get different clients', async () => {
  const r = await render(h('div', null,
    h(Probe, { url: 'ws://a.test/' }), h(Probe, { url: 'ws://b.test/' })));
  assert.deepEqual(FakeWebSocket.instances.map((w) => w.url.host).sort(), ['a.test', 'b.test']);
  await act(async () => r.unmount());
  await settle();
});

test('the returned state follows the connection', async () => {
  const r = await render(h(Probe, { url: 'ws://a.test/' }));
  assert.equal(r.toJSON().children[0], 'connecting');
  await act(async () => FakeWebSocket.last().accept());
  assert.equal(r.toJSON().children[0], 'open');
  await act(async () => r.unmount());
  await settle();
});

test('re-rendering with new inline callbacks adds no listener and touches no socket', async () => {
  let client;
  const got = [];
  const el = (tag) => h(Probe, {
    url: 'ws://a.test/',
    getToken: () => `token-${tag}`,
    onMessage: (data) => got.push([tag, data]),
    report: (x) => { client = x.client ?? client; },
  });
  const r = await render(el('first'));
  await act(async () => FakeWebSocket.last().accept(''));
  let adds = 0;
  let removes = 0;
  const add = client.addEventListener.bind(client);
  const remove = client.removeEventListener.bind(client);
  client.addEventListener = (...a) => { adds++; return add(...a); };
  client.removeEventListener = (...a) => { removes++; return remove(...a); };
  for (let i = 0; i < 5; i++) await act(async () => r.update(el(`render${i}`)));
  assert.equal(adds, 0);
  assert.equal(removes, 0);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.last().closedBy, null);
  await act(async () => FakeWebSocket.last().deliver({ n: 1 }));
  assert.deepEqual(got, [['render4', { n: 1 }]], 'the latest onMessage got it, once');
  // the next connect uses the latest getToken
  await act(async () => FakeWebSocket.last().drop(1006));
  await act(() => new Promise((resolve) => setTimeout(resolve, 600)));
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(FakeWebSocket.last().url.searchParams.get('token'), 'token-render4');
  await act(async () => r.unmount());
  await settle();
});

test('unmounting one user keeps the client; the last one closes it', async () => {
  const got = [];
  const both = (withSecond) => h('div', null,
    h(Probe, { url: 'ws://a.test/', onMessage: (d) => got.push(['one', d]) }),
    withSecond ? h(Probe, { url: 'ws://a.test/', onMessage: (d) => got.push(['two', d]) }) : null);
  const r = await render(both(true));
  await act(async () => FakeWebSocket.last().accept(''));
  await act(async () => r.update(both(false)));
  await settle();
  const ws = FakeWebSocket.last();
  assert.equal(ws.closedBy, null, 'still in use by the first component');
  await act(async () => ws.deliver({ n: 2 }));
  assert.deepEqual(got, [['one', { n: 2 }]], 'the unmounted one is unsubscribed');
  await act(async () => r.unmount());
  await settle();
  assert.deepEqual(ws.closedBy, { code: 1000, reason: '' });
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('StrictMode double mount keeps one socket open', async () => {
  const r = await render(h(React.StrictMode, null, h(Probe, { url: 'ws://a.test/' })));
  await settle();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.last().closedBy, null);
  await act(async () => r.unmount());
  await settle();
  assert.notEqual(FakeWebSocket.last().closedBy, null);
});

test('a new mount after the last unmount gets a fresh, open client', async () => {
  let r = await render(h(Probe, { url: 'ws://a.test/' }));
  await act(async () => r.unmount());
  await settle();
  r = await render(h(Probe, { url: 'ws://a.test/' }));
  assert.equal(FakeWebSocket.instances.length, 2);
  await act(async () => FakeWebSocket.last().accept(''));
  assert.equal(r.toJSON().children[0], 'open');
  await act(async () => r.unmount());
  await settle();
});

test('since starts the shared client at that cursor (load, then follow)', async () => {
  const cursor = '0123456789abcdef:42:100:105:';
  const r = await render(h(Probe, { url: 'ws://a.test/', since: cursor }));
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), cursor);
  await act(async () => r.unmount());
  await settle();
});

test("the hook's since overrides options.since; options.since alone works too", async () => {
  const both = await render(h(Probe, { url: 'ws://a.test/', since: '77',
                                       options: { ...OPTIONS, since: '5' } }));
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), '77');
  await act(async () => both.unmount());
  await settle();
  const alone = await render(h(Probe, { url: 'ws://b.test/',
                                        options: { ...OPTIONS, since: '5' } }));
  assert.equal(FakeWebSocket.last().url.searchParams.get('since'), '5');
  await act(async () => alone.unmount());
  await settle();
});
