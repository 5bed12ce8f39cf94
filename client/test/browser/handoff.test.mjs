// "Load, then follow" in a real browser (Debian's chromium, via playwright-core)
// against a real wsnotify-bridge and PostgreSQL: the application reads its
// state and SELECT ws_cursor() in one REPEATABLE READ transaction, passes the
// cursor to the client as `since`, and the page receives exactly the messages
// of the transactions that snapshot did not see: those committed after it
// (also while it was still open, and one in flight when it was taken) before
// the page connected, each once, and none the snapshot saw.  A reconnect after
// that resumes from the last message's id, not from the snapshot.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mintToken, openBrowserPage, sleep, startWorld, stopWorld, waitFor } from './harness.mjs';

let world;
let cluster;

before(async () => {
  // the application's state: items, each announced to its user by a trigger
  world = await startWorld('handofftest', `
    CREATE TABLE items (id serial PRIMARY KEY, user_id text NOT NULL, label text);
    CREATE FUNCTION items_announce() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM send_ws(NEW.user_id, jsonb_build_object('label', NEW.label));
      RETURN NEW;
    END $$;
    CREATE TRIGGER items_announce AFTER INSERT ON items
      FOR EACH ROW EXECUTE FUNCTION items_announce();`);
  ({ cluster } = world);
});

after(() => stopWorld(world));

/** INSERT an item for `user` (its message is sent at commit) in a transaction of its own. */
function addItem(user, label) {
  cluster.sql(`INSERT INTO items (user_id, label) VALUES ('${user}', '${label}')`);
}

/** The labels of the messages the page got, and their ids. */
const received = (page) => page.evaluate(() => window.t.messages);

test('the page gets exactly what its ws_cursor() snapshot did not see, then follows', async () => {
  const user = 'alice';
  addItem(user, 'before-1');
  addItem(user, 'before-2');
  // a transaction in flight while the snapshot is taken, committed after it
  const inFlight = cluster.session();
  const load = cluster.session();
  let state;
  let cursor;
  try {
    await inFlight.query(`BEGIN;
      INSERT INTO items (user_id, label) VALUES ('${user}', 'in-flight');`);
    addItem(user, 'before-3');
    // the application's load: its state and the cursor, in one snapshot
    state = (await load.query(`BEGIN ISOLATION LEVEL REPEATABLE READ;
      SELECT string_agg(label, ',' ORDER BY id) FROM items WHERE user_id = '${user}';`)).split(',');
    addItem(user, 'while-loading');      // committed after the snapshot, before ws_cursor()
    cursor = await load.query('SELECT ws_cursor(); COMMIT;');
    await inFlight.query('COMMIT;');
  } finally {
    await inFlight.close();
    await load.close();
  }
  assert.deepEqual(state, ['before-1', 'before-2', 'before-3']);
  assert.match(cursor, /^[0-9a-f]{16}:[0-9]+:[0-9]+:[0-9]+:[0-9,]*$/);
  addItem(user, 'after-load');           // after the load, before the page connects

  const { page, close } = await openBrowserPage(world.chromium, world.bridge.url(),
                                                () => mintToken(user));
  try {
    await page.waitForFunction(() => window.wsnotifyLoaded === true, null, { timeout: 10000 });
    await page.evaluate((since) => window.startClient({
      protocol: 'wsnotify.v1', since, backoff: { initialDelay: 200, maxDelay: 1000 },
    }), cursor);
    await page.waitForFunction(() => window.t.client.state === 'open', null, { timeout: 10000 });
    addItem(user, 'live');
    await page.waitForFunction(() => window.t.messages.length >= 4, null, { timeout: 10000 });
    await sleep(500);                    // anything extra (a duplicate, an old one) shows by now
    let got = await received(page);
    const labels = got.map((m) => m.data.label);
    assert.deepEqual([...labels].sort(), ['after-load', 'in-flight', 'live', 'while-loading']);
    assert.equal(labels[labels.length - 1], 'live');
    // the state and the messages together: every item once
    const all = cluster.sql(`SELECT string_agg(label, ',' ORDER BY label) FROM items`).split(',');
    assert.deepEqual([...state, ...labels].sort(), all);
    // ids increase, and the client now resumes from the last one
    const ids = got.map((m) => BigInt(m.id));
    assert.deepEqual([...ids].sort((a, b) => (a < b ? -1 : 1)), ids);
    assert.equal(await page.evaluate(() => window.t.client.lastId), got[got.length - 1].id);

    // the server closes the socket: the reconnect asks since=<last id>, so nothing comes again
    cluster.sql(`SELECT close_ws(connection_id, 4000, 'test') FROM websocket_client
                 WHERE user_id = '${user}'`);
    await waitFor(async () => (await page.evaluate(
      () => window.t.events.filter((e) => e.type === 'open').length)) === 2,
    { what: 'the reconnect' });
    addItem(user, 'after-reconnect');
    await page.waitForFunction(() => window.t.messages.length >= 5, null, { timeout: 10000 });
    await sleep(500);
    got = await received(page);
    assert.deepEqual(got.slice(4).map((m) => m.data.label), ['after-reconnect']);
    assert.equal(await page.evaluate(() => window.t.client.duplicatesDropped), 0);
  } finally {
    await close();
  }
});
