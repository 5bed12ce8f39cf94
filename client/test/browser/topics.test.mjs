// Topics and presence with the built client in chromium against a real
// wsnotify-bridge and PostgreSQL: subscribe() decided by $subscribe and a
// publish_ws reaching the page; refusals (?topics= and the action) as
// subscriptionerror; the topic resubscribed after the bridge is killed and
// restarted, with a wsnotify.v1 resume that delivers the missed topic message
// exactly once; resubscribe after close_ws (plain); useTopic/usePresence on a
// React page, seeded by a route over ws_presence(), with join and leave.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mintToken, openBrowserPage, sleep, startWorld, stopWorld, waitFor } from './harness.mjs';

const FAST = { initialDelay: 200, maxDelay: 1000 };
let world;
let cluster;
let bridge;
let userSeq = 0;

before(async () => {
  // $subscribe: rooms and the lobby are open, everything else is refused.
  world = await startWorld('topics', `
    CREATE FUNCTION allow_rooms(c jsonb, m jsonb) RETURNS jsonb LANGUAGE sql AS
      $$ SELECT to_jsonb(m->>'topic' LIKE 'room:%' OR m->>'topic' = 'lobby') $$;
    SELECT ws_route('$subscribe', 'allow_rooms(jsonb,jsonb)');
    CREATE FUNCTION who_is_here(c jsonb, m jsonb) RETURNS jsonb LANGUAGE sql AS
      $$ SELECT jsonb_build_object('users', coalesce(jsonb_agg(user_id ORDER BY user_id), '[]'))
         FROM ws_presence(m->>'topic') $$;
    SELECT ws_route('who_is_here', 'who_is_here(jsonb,jsonb)');
    SELECT ws_topic_presence('lobby')`);
  ({ cluster, bridge } = world);
});

after(() => stopWorld(world));

/** A user name no other test uses. */
const newUser = () => `t${++userSeq}`;

/** A fresh browser context on `page` (default: the test page) for `user`. */
async function openPage(user, where = '') {
  return openBrowserPage(world.chromium, `${bridge.url()}${where}`, () => mintToken(user));
}

/** Start the test page's client with `opts` and wait until it is open. */
async function startOpen(page, opts = {}) {
  await page.waitForFunction(() => window.wsnotifyLoaded === true, null, { timeout: 10000 });
  await page.evaluate((o) => window.startClient(o),
                      { protocol: 'wsnotify.v1', backoff: FAST, ...opts });
  await page.waitForFunction(() => window.t.client.state === 'open', null, { timeout: 10000 });
}

/** The messages' data the page got so far. */
const dataOf = (page) => page.evaluate(() => window.t.messages.map((m) => m.data));

/** Wait until the page got n messages; return their data. */
async function waitData(page, n) {
  await page.waitForFunction((k) => window.t.messages.length >= k, n, { timeout: 10000 });
  return dataOf(page);
}

/** Events of `type` the page's client emitted. */
const eventsOf = (page, type) =>
  page.evaluate((ty) => window.t.events.filter((e) => e.type === ty), type);

/** publish_ws from SQL, committed; returns the subscriber count. */
function publish(topic, obj) {
  const json = JSON.stringify(obj).replaceAll("'", "''");
  return Number(cluster.sql(`SELECT publish_ws('${topic}', '${json}'::jsonb)`));
}

/** The topics `user`'s live connections are subscribed to. */
function subscriptionsOf(user) {
  const out = cluster.sql(`SELECT s.topic FROM websocket_subscription s
                           JOIN websocket_client c USING (connection_id)
                           WHERE c.user_id = '${user}' ORDER BY 1`);
  return out ? out.split('\n') : [];
}

test('subscribe() is allowed by $subscribe and a publish_ws reaches the page', async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page);
    const reply = await page.evaluate(() => window.t.client.subscribe('room:1'));
    assert.deepEqual(reply, { subscribed: 'room:1' });
    assert.deepEqual(subscriptionsOf(user), ['room:1']);
    assert.equal(publish('room:2', { n: 0 }), 0, 'nobody on room:2');
    assert.equal(publish('room:1', { n: 1 }), 1);
    assert.deepEqual(await waitData(page, 1), [{ n: 1 }]);
    const unsub = await page.evaluate(() => window.t.client.unsubscribe('room:1'));
    assert.deepEqual(unsub, { unsubscribed: 'room:1' });
    assert.deepEqual(subscriptionsOf(user), []);
    assert.equal(publish('room:1', { n: 2 }), 0);
    await sleep(300);
    assert.deepEqual(await dataOf(page), [{ n: 1 }], 'nothing after unsubscribe');
  } finally {
    await close();
  }
});

test('refused topics: ?topics= and the action both give subscriptionerror and drop the topic',
     async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page, { topics: ['room:5', 'secret'] });
    await page.waitForFunction(
      () => window.t.events.some((e) => e.type === 'subscriptionerror'), null, { timeout: 10000 });
    let refusals = await eventsOf(page, 'subscriptionerror');
    assert.deepEqual(refusals.map((e) => [e.topic, e.code]), [['secret', 'handler_error']]);
    assert.match(refusals[0].message, /refused/);
    assert.deepEqual(await page.evaluate(() => window.t.client.topics), ['room:5']);
    await waitFor(() => subscriptionsOf(user).length === 1, { what: 'the subscription row' });
    assert.deepEqual(subscriptionsOf(user), ['room:5']);
    const code = await page.evaluate(() => window.t.client.subscribe('private:1')
      .then(() => 'resolved', (e) => e.code));
    assert.equal(code, 'handler_error');
    refusals = await eventsOf(page, 'subscriptionerror');
    assert.deepEqual(refusals.map((e) => e.topic), ['secret', 'private:1']);
    assert.deepEqual(await page.evaluate(() => window.t.client.topics), ['room:5']);
    const thrown = await page.evaluate(() => {
      try { window.t.client.subscribe('no spaces'); return null; } catch (e) { return e.name; }
    });
    assert.equal(thrown, 'TypeError', 'an invalid name throws before anything is sent');
    assert.equal(await page.evaluate(() => window.t.client.state), 'open');
  } finally {
    await close();
  }
});

test('after the bridge is killed and restarted the topic is resubscribed and the v1 resume ' +
     'delivers the missed topic message exactly once', async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page);
    await page.evaluate(() => window.t.client.subscribe('room:9'));   // by action
    assert.equal(publish('room:9', { n: 1 }), 1);
    await waitData(page, 1);
    await bridge.stop('SIGKILL');
    await page.waitForFunction(() => window.t.client.state !== 'open', null, { timeout: 10000 });
    publish('room:9', { n: 2 });                                      // missed while down
    publish('room:other', { n: -1 });
    await sleep(300);
    await bridge.start();
    await page.waitForFunction(() => window.t.events.filter((e) => e.type === 'open').length === 2,
                               null, { timeout: 15000 });
    await waitFor(() => {
      const rows = cluster.sql(`SELECT count(*) FROM websocket_subscription s JOIN websocket_client c
        USING (connection_id) WHERE c.user_id = '${user}' AND c.bridge_id = 'browser-${bridge.port}'
        AND s.topic = 'room:9'`);
      return rows === '1';
    }, { what: 'the new connection subscribed to room:9' });
    publish('room:9', { n: 3 });
    await waitData(page, 3);
    await sleep(500);                                                  // room for a duplicate
    const msgs = await page.evaluate(() => window.t.messages);
    assert.deepEqual(msgs.map((m) => m.data.n), [1, 2, 3], 'the missed one once, in order');
    const ids = msgs.map((m) => BigInt(m.id));
    assert.ok(ids[0] < ids[1] && ids[1] < ids[2], 'cursors increase');
    // the reconnect named the topic in the URL: no action was needed, none refused
    assert.deepEqual(await eventsOf(page, 'subscriptionerror'), []);
  } finally {
    await close();
  }
});

test('plain mode: after close_ws the reconnect resubscribes the topic', async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page, { protocol: 'plain' });
    await page.evaluate(() => window.t.client.subscribe('room:p'));
    await waitFor(() => subscriptionsOf(user).length === 1, { what: 'the subscription row' });
    const old = cluster.sql(`SELECT connection_id FROM websocket_client WHERE user_id = '${user}'`);
    cluster.sql(`SELECT close_ws('${old}')`);
    await page.waitForFunction(() => window.t.events.filter((e) => e.type === 'open').length === 2,
                               null, { timeout: 10000 });
    await waitFor(() => {
      const now = cluster.sql(`SELECT connection_id FROM websocket_client WHERE user_id = '${user}'`);
      return now && now !== old && subscriptionsOf(user).length === 1;
    }, { what: 'the new connection subscribed' });
    assert.equal(publish('room:p', { after: 'close' }), 1);
    // the action's {"subscribed": T} reply is a `reply` event, not a message
    assert.deepEqual(await waitData(page, 1), [{ after: 'close' }]);
    const replies = await eventsOf(page, 'reply');
    assert.equal(replies.length, 1);
  } finally {
    await close();
  }
});

test('useTopic and usePresence on a React page: messages, seed, join and leave', async () => {
  const alice = newUser();
  const bob = newUser();
  const carol = newUser();
  // bob is in the lobby before alice's page opens: the seed must show him
  const bobPage = await openPage(bob);
  const errors = [];
  let alicePage;
  let carolPage;
  try {
    await startOpen(bobPage.page, { topics: ['lobby'] });
    await waitFor(() => subscriptionsOf(bob).length === 1, { what: "bob's subscription" });
    alicePage = await openPage(alice, 'react-topics.html?topic=lobby');
    const page = alicePage.page;
    page.on('pageerror', (err) => errors.push(err.message));
    await page.waitForFunction(() => window.reactReady === true, null, { timeout: 10000 });
    await page.locator('#state', { hasText: 'open' }).waitFor({ timeout: 10000 });
    await page.locator('#present', { hasText: `${bob}` }).waitFor({ timeout: 10000 });
    await page.locator('#present', { hasText: `${alice},${bob}` }).waitFor({ timeout: 10000 });
    assert.deepEqual(subscriptionsOf(alice), ['lobby'], 'one subscription (StrictMode too)');
    // bob saw alice join
    await bobPage.page.waitForFunction((u) => window.t.events.some(
      (e) => e.type === 'presence' && e.presence === 'join' && e.userId === u), alice,
    { timeout: 10000 });
    // a message on the topic reaches the component
    publish('lobby', { topic: 'lobby', text: 'hello lobby' });
    await page.locator('#messages li', { hasText: 'hello lobby' }).waitFor({ timeout: 10000 });
    // carol joins and leaves
    carolPage = await openPage(carol);
    await startOpen(carolPage.page, { topics: ['lobby'] });
    await page.locator('#present', { hasText: `${alice},${bob},${carol}` })
      .waitFor({ timeout: 10000 });
    await carolPage.close();
    carolPage = null;
    await waitFor(() => cluster.sql(`SELECT count(*) FROM websocket_presence_leaving
                                     WHERE user_id = '${carol}'`) === '1',
                  { what: "carol's pending leave" });
    // skip the debounce: what the bridges' heartbeat does once it has passed
    cluster.sql(`UPDATE websocket_presence_leaving SET left_at = now() - interval '1 hour'
                 WHERE user_id = '${carol}'`);
    cluster.sql('SELECT wsnotify_publish_leaves()');
    await page.locator('#present', { hasText: new RegExp(`^${alice},${bob}$`) })
      .waitFor({ timeout: 10000 });
    assert.equal(await page.locator('#messages li').count(), 1, 'presence frames are not messages');
    assert.equal(await page.locator('#error').textContent(), '');
    assert.deepEqual(errors, []);
  } finally {
    await carolPage?.close();
    await alicePage?.close();
    await bobPage.close();
  }
});
