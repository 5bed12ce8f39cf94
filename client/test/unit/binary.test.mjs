// Binary messages (send_ws_binary): the client asks for ArrayBuffers, passes
// plain binary frames on as they are, and decodes the wsnotify.v1 binary
// envelope (0x01, 8-byte big-endian cursor, payload) into a message event
// whose data is the payload's ArrayBuffer and whose id is the cursor.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { WSClient, decodeBinaryEnvelope } from '../../dist/index.js';
import { FakeOnline, FakeWebSocket, flush, record } from './fake.mjs';

const clients = [];

/** An open client on a fake socket. */
async function opened(protocol = 'wsnotify.v1', extra = {}) {
  const client = new WSClient({
    url: 'ws://bridge.test/', WebSocket: FakeWebSocket, online: new FakeOnline(true),
    getToken: async () => 'tok', ...(protocol === 'plain' ? { protocol: 'plain' } : {}), ...extra,
  });
  clients.push(client);
  client.open();
  await flush();
  const ws = FakeWebSocket.last();
  ws.accept(protocol === 'plain' ? '' : protocol);
  return { client, ws };
}

/** A v1 binary envelope for cursor id around payload bytes. */
function envelope(id, bytes) {
  const buf = new ArrayBuffer(9 + bytes.length);
  const view = new DataView(buf);
  view.setUint8(0, 0x01);
  view.setBigUint64(1, BigInt(id), false);
  new Uint8Array(buf, 9).set(bytes);
  return buf;
}

const ALL = Uint8Array.from({ length: 256 }, (_, i) => i);

beforeEach(() => FakeWebSocket.reset());
afterEach(() => clients.splice(0).forEach((c) => c.close()));

test('the socket is asked for ArrayBuffers, not Blobs', async () => {
  const { ws } = await opened();
  assert.equal(ws.binaryType, 'arraybuffer');
});

test('v1: a binary envelope becomes a message with the payload as ArrayBuffer and its cursor', async () => {
  const { client, ws } = await opened();
  const seen = record(client, 'message');
  ws.onmessage({ data: envelope('9007199254740993', ALL) });
  assert.equal(seen.length, 1);
  assert.ok(seen[0].data instanceof ArrayBuffer);
  assert.deepEqual(new Uint8Array(seen[0].data), ALL);
  assert.equal(seen[0].id, '9007199254740993', 'ids beyond 2^53 stay exact');
  assert.equal(client.lastId, '9007199254740993');
});

test('v1: binary and text messages share one cursor, and a replayed binary duplicate is dropped', async () => {
  const { client, ws } = await opened();
  const seen = record(client, 'message');
  ws.deliver({ id: '5', data: { n: 5 } });
  ws.onmessage({ data: envelope(6, [1, 2, 3]) });
  ws.onmessage({ data: envelope(6, [1, 2, 3]) });
  ws.deliver({ id: '7', data: { n: 7 } });
  assert.deepEqual(seen.map((e) => e.id), ['5', '6', '7']);
  assert.equal(client.lastId, '7');
});

test('v1: an empty binary message is an empty ArrayBuffer', async () => {
  const { client, ws } = await opened();
  const seen = record(client, 'message');
  ws.onmessage({ data: envelope(1, []) });
  assert.equal(seen[0].data.byteLength, 0);
});

test('v1: a binary frame without the envelope is a frame error, not a message', async () => {
  const { client, ws } = await opened();
  const seen = record(client, 'message');
  const errors = record(client, 'error');
  ws.onmessage({ data: new Uint8Array([0x02, 0, 0]).buffer });
  assert.equal(seen.length, 0);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'frame');
});

test('plain: binary frames arrive as the ArrayBuffer the server sent', async () => {
  const { client, ws } = await opened('plain');
  const seen = record(client, 'message');
  ws.onmessage({ data: ALL.buffer });
  assert.equal(seen.length, 1);
  assert.equal(seen[0].id, null);
  assert.deepEqual(new Uint8Array(seen[0].data), ALL);
});

test('decodeBinaryEnvelope refuses short frames and other types', () => {
  assert.equal(decodeBinaryEnvelope(new ArrayBuffer(8)), null);
  assert.equal(decodeBinaryEnvelope(new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 1]).buffer), null);
  assert.deepEqual(decodeBinaryEnvelope(envelope(42, [9])), { id: '42', data: new Uint8Array([9]).buffer });
});
