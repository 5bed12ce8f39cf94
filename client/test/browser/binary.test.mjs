// Binary messages in a real browser (Debian's chromium, via playwright-core)
// against a real wsnotify-bridge and PostgreSQL: send_ws_binary arrives at the
// client's `message` listener as an ArrayBuffer, byte for byte, for plain
// and wsnotify.v1 connections (v1: the binary envelope decoded, its cursor
// in `id`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mintToken, openBrowserPage, startWorld, stopWorld, waitFor } from './harness.mjs';

let world;
let cluster;
let userSeq = 0;

before(async () => {
  world = await startWorld('binarytest');
  ({ cluster } = world);
});

after(() => stopWorld(world));

/** A page whose client (protocol given) is open; binary messages are recorded as byte arrays. */
async function openClient(user, protocol) {
  const { page, close } = await openBrowserPage(world.chromium, world.bridge.url(),
                                                () => mintToken(user));
  await page.waitForFunction(() => window.wsnotifyLoaded === true, null, { timeout: 10000 });
  await page.evaluate((p) => {
    window.binary = [];
    window.startClient({ protocol: p, backoff: { initialDelay: 200, maxDelay: 1000 } });
    window.t.client.addEventListener('message', (e) => {
      if (e.data instanceof ArrayBuffer)
        window.binary.push({ bytes: Array.from(new Uint8Array(e.data)), id: e.id });
    });
  }, protocol);
  await page.waitForFunction(() => window.t.client.state === 'open', null, { timeout: 10000 });
  await waitFor(() => cluster.sql(`SELECT count(*) FROM websocket_client WHERE user_id = '${user}'`) === '1',
                { what: 'the connection row' });
  return { page, close };
}

for (const protocol of ['plain', 'wsnotify.v1']) {
  test(`${protocol}: send_ws_binary arrives as an ArrayBuffer with all 256 byte values`, async () => {
    const user = `b${++userSeq}`;
    const { page, close } = await openClient(user, protocol);
    try {
      cluster.sql(`SELECT send_ws_binary('${user}',
                   (SELECT string_agg(set_byte('\\x00'::bytea, 0, i), ''::bytea ORDER BY i)
                    FROM generate_series(0, 255) i))`);
      await page.waitForFunction(() => window.binary.length >= 1, null, { timeout: 10000 });
      const [got] = await page.evaluate(() => window.binary);
      assert.deepEqual(got.bytes, Array.from({ length: 256 }, (_, i) => i));
      if (protocol === 'plain') assert.equal(got.id, null);
      else assert.equal(got.id, cluster.sql('SELECT max(id) FROM websocket_message'));
    } finally {
      await close();
    }
  });
}
