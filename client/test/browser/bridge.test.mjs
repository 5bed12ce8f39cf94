// The built client in a real browser (Debian's chromium, via playwright-core)
// against a real wsnotify-bridge and a real PostgreSQL: the page is served by
// the bridge's --static, messages come from send_ws and triggers, the bridge
// is killed and restarted, the server closes the socket, tokens are refused.
// Tests that need a bridge feature not built yet (wsnotify.v1, routes) find
// out by asking the bridge, and are skipped with the reason.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  Bridge, Cluster, freePort, launchChromium, makeSite, mintToken, openBrowserPage, rawUpgrade,
  sleep, waitFor,
} from './harness.mjs';

const FAST = { initialDelay: 200, maxDelay: 1000 };
const NEEDS_V1 = 'needs wsnotify.v1 (envelopes, ?since= resume) in the bridge (issue 4)';
const NEEDS_V1_HANDSHAKE = 'needs the bridge to complete an upgrade that asks for ' +
  'Sec-WebSocket-Protocol: wsnotify.v1 (issue 4); this bridge does not';
const NEEDS_ROUTES = 'needs route replies in the bridge (issue 5)';

let cluster;
let bridge;
let chromium;
let site;
const features = { v1: false, v1Handshake: false, routes: false };
let userSeq = 0;

before(async () => {
  cluster = new Cluster(await freePort());
  cluster.init('browser');
  site = makeSite(path.join(cluster.dir, 'site'));
  // Probe for wsnotify.v1 on a bridge of its own: a bridge without it might not survive.
  const probe = await new Bridge(cluster, await freePort(), site).start();
  const up = await rawUpgrade(probe.port, `/?token=${mintToken('probe')}`,
                              { 'Sec-WebSocket-Protocol': 'wsnotify.v1' });
  await probe.stop('SIGKILL');
  features.v1Handshake = up.status === 101;
  features.v1 = up.status === 101 && up.protocol === 'wsnotify.v1';
  bridge = await new Bridge(cluster, await freePort(), site).start();
  chromium = await launchChromium();
  features.routes = await probeRoutes();
  console.log(`bridge features: ${JSON.stringify(features)}`);
});

// The skips below are for pointing the suite at an older bridge; the bridge
// built in this tree has every feature, and losing one must fail somewhere,
// not only turn the tests that need it into skips.
test('the bridge under test has every feature these tests can skip for', () => {
  assert.deepEqual(features, { v1: true, v1Handshake: true, routes: true });
});

// A test that killed the bridge for good fails by itself; the next ones get a new bridge.
beforeEach(async () => {
  if (bridge && bridge.proc.exitCode === null && bridge.proc.signalCode === null) return;
  console.error(`# the bridge had died; its log ends with:\n${bridge.log().slice(-1500)}`);
  await bridge.start();
});

after(async () => {
  await chromium?.close();
  await bridge?.stop();
  cluster?.destroySync();
});

/** A user name no other test uses. */
function newUser() {
  return `u${++userSeq}`;
}

/**
 * A fresh browser context on the test page; `token(req)` answers the page's
 * getToken() calls (default: a good token for `user`).
 */
async function openPage(user, token = () => mintToken(user)) {
  const opened = await openBrowserPage(chromium, bridge.url(), token);
  await opened.page.waitForFunction(() => window.wsnotifyLoaded === true, null, { timeout: 10000 });
  return opened;
}

/** Start the page's client with `opts` and wait until it is open. */
async function startOpen(page, opts = {}) {
  await page.evaluate((o) => window.startClient(o), { protocol: 'plain', backoff: FAST, ...opts });
  await page.waitForFunction(() => window.t.client.state === 'open', null, { timeout: 10000 });
}

/** The messages the page got so far. */
const messagesOf = (page) => page.evaluate(() => window.t.messages);

/** Wait until the page got n messages; return them. */
async function waitMessages(page, n, timeout = 10000) {
  await page.waitForFunction((k) => window.t.messages.length >= k, n, { timeout });
  return messagesOf(page);
}

/** Events of `type` the page's client emitted. */
const eventsOf = (page, type) =>
  page.evaluate((ty) => window.t.events.filter((e) => e.type === ty), type);

/** send_ws from SQL, committed; returns how many connections it addressed. */
function sendWs(user, obj) {
  const json = JSON.stringify(obj).replaceAll("'", "''");
  return Number(cluster.sql(`SELECT send_ws('${user}', '${json}'::jsonb)`));
}

/** The live connection ids of `user`. */
function connectionsOf(user) {
  const out = cluster.sql(`SELECT connection_id FROM websocket_client WHERE user_id = '${user}'
                           ORDER BY connected_at`);
  return out ? out.split('\n') : [];
}

/** Does the bridge answer a client's action at all?  (No route: an error frame.) */
async function probeRoutes() {
  const { page, close } = await openPage('probe');
  try {
    return await page.evaluate(() => new Promise((resolve) => {
      window.nodeToken({}).then((tok) => {
        const ws = new WebSocket(`ws://${location.host}/?token=${tok}`);
        ws.onopen = () => ws.send(JSON.stringify({ action: 'wsnotify_probe_no_such_route' }));
        ws.onmessage = () => { ws.close(); resolve(true); };
        ws.onclose = () => resolve(false);
        setTimeout(() => { ws.close(); resolve(false); }, 1500);
      });
    }));
  } finally {
    await close();
  }
}

test('the page loads the built client from --static and gets a send_ws message', async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page);
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    assert.equal(sendWs(user, { text: 'hello', n: 1 }), 1);
    const msgs = await waitMessages(page, 1);
    assert.deepEqual(msgs, [{ data: { text: 'hello', n: 1 }, id: null }]);
    // the page shows the payload; jsonb orders keys (shorter first)
    assert.equal(await page.locator('#messages li').first().textContent(),
                 '{"n":1,"text":"hello"}');
  } finally {
    await close();
  }
});

test("a trigger's message shows on the page; a rolled-back one never does", async () => {
  const user = newUser();
  cluster.sql(`CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, user_id text, item text);
    CREATE OR REPLACE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM send_ws(NEW.user_id, jsonb_build_object('order', NEW.id, 'item', NEW.item));
      RETURN NEW;
    END $$;
    DROP TRIGGER IF EXISTS orders_notify ON orders;
    CREATE TRIGGER orders_notify AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_notify();`);
  const { page, close } = await openPage(user);
  try {
    await startOpen(page);
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    cluster.sql(`BEGIN; INSERT INTO orders (user_id, item) VALUES ('${user}', 'rolled back');
                 ROLLBACK`);
    cluster.sql(`INSERT INTO orders (user_id, item) VALUES ('${user}', 'book')`);
    await page.locator('#messages li', { hasText: 'book' }).waitFor({ timeout: 10000 });
    await sleep(300);
    const items = (await messagesOf(page)).map((m) => m.data.item);
    assert.deepEqual(items, ['book']);
  } finally {
    await close();
  }
});

test('many messages of one transaction arrive once each, in order', async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page);
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    cluster.sql(`SELECT send_ws('${user}', jsonb_build_object('n', i)) FROM generate_series(1, 50) i`);
    await waitMessages(page, 50);
    await sleep(300);
    const ns = (await messagesOf(page)).map((m) => m.data.n);
    assert.deepEqual(ns, Array.from({ length: 50 }, (_, i) => i + 1));
  } finally {
    await close();
  }
});

/** Kill the bridge, optionally send while it is down, restart, check what arrived. */
async function restartScenario(protocol) {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page, { protocol });
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    sendWs(user, { n: 1 });
    await waitMessages(page, 1);
    await bridge.stop('SIGKILL');
    await page.waitForFunction(() => window.t.client.state !== 'open', null, { timeout: 10000 });
    if (protocol === 'wsnotify.v1') sendWs(user, { n: 2 });   // missed while down
    await sleep(500);
    await bridge.start();
    await page.waitForFunction(() => window.t.client.state === 'open', null, { timeout: 15000 });
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the new connection row' });
    sendWs(user, { n: 3 });
    const want = protocol === 'wsnotify.v1' ? [1, 2, 3] : [1, 3];
    await waitMessages(page, want.length);
    await sleep(500);                                          // room for a duplicate
    const msgs = await messagesOf(page);
    assert.deepEqual(msgs.map((m) => m.data.n), want, 'every message once, none twice');
    const opens = await eventsOf(page, 'open');
    assert.equal(opens.length, 2, 'one reconnect');
    if (protocol === 'wsnotify.v1') {
      const ids = msgs.map((m) => BigInt(m.id));
      assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'cursors increase');
      assert.equal(await page.evaluate(() => window.t.client.lastId), msgs[msgs.length - 1].id);
    }
  } finally {
    await close();
  }
}

test('after the bridge is killed and restarted the page reconnects, with no duplicate (plain)',
     () => restartScenario('plain'));

test('after the bridge is killed and restarted the page catches up exactly once (wsnotify.v1)',
     async (t) => {
       if (!features.v1) return t.skip(features.v1Handshake ? NEEDS_V1 : NEEDS_V1_HANDSHAKE);
       await restartScenario('wsnotify.v1');
     });

test('asking for wsnotify.v1 works with this bridge: v1 when offered, plain otherwise',
     async (t) => {
  if (!features.v1Handshake) return t.skip(NEEDS_V1_HANDSHAKE);
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page, { protocol: 'wsnotify.v1' });
    const negotiated = await page.evaluate(() => window.t.client.protocol);
    assert.equal(negotiated, features.v1 ? 'wsnotify.v1' : 'plain');
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    sendWs(user, { v: 1 });
    const [m] = await waitMessages(page, 1);
    assert.deepEqual(m.data, { v: 1 });
    if (features.v1) assert.match(m.id, /^[0-9]+$/);
    else assert.equal(m.id, null);
  } finally {
    await close();
  }
});

test('v1: a cursor the bridge cannot resume from gives reset, then live messages', async (t) => {
  if (!features.v1) return t.skip(features.v1Handshake ? NEEDS_V1 : NEEDS_V1_HANDSHAKE);
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page, { protocol: 'wsnotify.v1', since: '999999999999' });
    await page.waitForFunction(() => window.t.events.some((e) => e.type === 'reset'), null,
                               { timeout: 10000 });
    const [reset] = await eventsOf(page, 'reset');
    assert.match(reset.id, /^[0-9]+$/);
    assert.notEqual(reset.id, '999999999999');
    assert.equal(await page.evaluate(() => window.t.client.lastId), reset.id);
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    sendWs(user, { after: 'reset' });
    const [m] = await waitMessages(page, 1);
    assert.deepEqual(m.data, { after: 'reset' });
    assert.ok(BigInt(m.id) > BigInt(reset.id), 'live ids continue past the reset cursor');
  } finally {
    await close();
  }
});

test('when the server closes the socket (close_ws) the client reconnects once', async () => {
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page);
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    const [first] = connectionsOf(user);
    assert.equal(cluster.sql(`SELECT close_ws('${first}', 4000, 'bye')`), 't');
    await page.waitForFunction(() => window.t.events.filter((e) => e.type === 'open').length === 2,
                               null, { timeout: 10000 });
    const closes = await eventsOf(page, 'close');
    assert.equal(closes.length, 1);
    assert.equal(closes[0].code, 4000);
    const conns = await waitFor(() => {
      const c = connectionsOf(user);
      return c.length === 1 && c[0] !== first && c;
    }, { what: 'one new connection row' });
    assert.notEqual(conns[0], first);
    sendWs(user, { after: 'close' });
    await waitMessages(page, 1);
    await sleep(300);
    assert.deepEqual((await messagesOf(page)).map((m) => m.data), [{ after: 'close' }]);
  } finally {
    await close();
  }
});

test('offline pauses reconnecting; online resumes at once', async () => {
  const user = newUser();
  const context = await chromium.browser.newContext();
  try {
    const page = await context.newPage();
    await page.exposeFunction('nodeToken', () => mintToken(user));
    await page.goto(bridge.url());
    await page.waitForFunction(() => window.wsnotifyLoaded === true, null, { timeout: 10000 });
    await startOpen(page, { backoff: { initialDelay: 100, maxDelay: 200 } });
    await context.setOffline(true);
    assert.equal(await page.evaluate(() => navigator.onLine), false);
    // the server ends the socket while the page is offline
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    cluster.sql(`SELECT close_ws(connection_id) FROM websocket_client WHERE user_id = '${user}'`);
    await page.waitForFunction(() => window.t.client.state === 'offline', null, { timeout: 10000 });
    const callsOffline = await page.evaluate(() => window.t.tokenCalls.length);
    await sleep(1500);                         // many backoff periods of 100-200 ms
    assert.equal(await page.evaluate(() => window.t.tokenCalls.length), callsOffline,
                 'no attempt while offline');
    assert.equal(await page.evaluate(() => window.t.client.state), 'offline');
    await context.setOffline(false);
    await page.waitForFunction(() => window.t.client.state === 'open', null, { timeout: 5000 });
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the new connection row' });
    sendWs(user, { back: 'online' });
    assert.deepEqual((await waitMessages(page, 1))[0].data, { back: 'online' });
  } finally {
    await context.close();
  }
});

/** The first token is bad; the client must ask again at once, with refresh set. */
async function refusedTokenScenario(badToken) {
  const user = newUser();
  let calls = 0;
  const { page, close } = await openPage(user, () => (++calls === 1 ? badToken(user)
                                                                    : mintToken(user)));
  try {
    // jitter off and a 5 s first delay: a backoff wait could not pass the timing check
    await startOpen(page, { backoff: { initialDelay: 5000, maxDelay: 5000 }, jitter: false });
    const tokenCalls = await page.evaluate(() => window.t.tokenCalls);
    assert.equal(tokenCalls.length, 2, 'getToken called again after the refusal, once');
    assert.equal(tokenCalls[0].refresh, false);
    assert.equal(tokenCalls[1].refresh, true);
    assert.ok(tokenCalls[1].at - tokenCalls[0].at < 2000,
              `asked again at once (${Math.round(tokenCalls[1].at - tokenCalls[0].at)} ms)`);
    const closes = await eventsOf(page, 'close');
    assert.equal(closes.length, 1);
    assert.equal(closes[0].wasOpen, false, 'the first attempt was refused before the upgrade');
    await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
    sendWs(user, { authorized: true });
    assert.deepEqual((await waitMessages(page, 1))[0].data, { authorized: true });
  } finally {
    await close();
  }
}

test('a token refused with 401 (bad signature): getToken is asked again, and it connects',
     () => refusedTokenScenario((user) => mintToken(user, { secret: 'not-the-secret' })));

test('an expired token is refreshed and the page connects', () =>
  refusedTokenScenario((user) => mintToken(user, { expIn: -3600 })));

test('the bridge really answers 401 to the tokens the refusal tests use', async () => {
  const bad = await rawUpgrade(bridge.port, `/?token=${mintToken('x', { secret: 'nope' })}`);
  const expired = await rawUpgrade(bridge.port, `/?token=${mintToken('x', { expIn: -3600 })}`);
  assert.equal(bad.status, 401);
  assert.equal(expired.status, 401);
});

/** Route action "echo" to a SQL handler that returns the text and the user. */
function addEchoRoute() {
  cluster.sql(`CREATE OR REPLACE FUNCTION echo_handler(conn jsonb, msg jsonb) RETURNS jsonb
      LANGUAGE sql AS $$ SELECT jsonb_build_object('echo', msg->'text', 'user', conn->>'user_id') $$;
    SELECT ws_route('echo', 'echo_handler(jsonb,jsonb)')`);
}

test("an action's reply arrives through send() (wsnotify.v1)", async (t) => {
  if (!features.v1) return t.skip(features.v1Handshake ? NEEDS_V1 : NEEDS_V1_HANDSHAKE);
  if (!features.routes) return t.skip(NEEDS_ROUTES);
  addEchoRoute();
  const user = newUser();
  const { page, close } = await openPage(user);
  try {
    await startOpen(page, { protocol: 'wsnotify.v1' });
    const reply = await page.evaluate(() => window.t.client.send('echo', { text: 'ping' }));
    assert.deepEqual(reply, { echo: 'ping', user });
    const err = await page.evaluate(() => window.t.client.send('no_such_action', {})
      .then(() => null, (e) => e.code));
    assert.equal(err, 'no_route');
    assert.equal(await page.evaluate(() => window.t.client.state), 'open');
  } finally {
    await close();
  }
});

test("plain mode: post() runs an action and the handler's result arrives as a message",
     async (t) => {
       if (!features.routes) return t.skip(NEEDS_ROUTES);
       addEchoRoute();
       const user = newUser();
       const { page, close } = await openPage(user);
       try {
         await startOpen(page, { protocol: 'plain' });
         assert.equal(await page.evaluate(() => window.t.client.post('echo', { text: 'plain' })),
                      true);
         const [m] = await waitMessages(page, 1);
         assert.deepEqual(m.data, { echo: 'plain', user });
         const err = await page.evaluate(() => window.t.client.send('echo', {})
           .then(() => null, (e) => e.code));
         assert.equal(err, 'no_replies', 'send() says a plain socket cannot match replies');
       } finally {
         await close();
       }
     });

test('the React hook in the browser: two components share one socket and both get the message',
     async () => {
       const user = newUser();
       const context = await chromium.browser.newContext();
       try {
         const page = await context.newPage();
         const errors = [];
         page.on('pageerror', (err) => errors.push(err.message));
         await page.exposeFunction('nodeToken', () => mintToken(user));
         await page.goto(`${bridge.url()}react.html`);
         await page.waitForFunction(() => window.reactReady === true, null, { timeout: 10000 });
         await page.locator('#one .state', { hasText: 'open' }).waitFor({ timeout: 10000 });
         await page.locator('#two .state', { hasText: 'open' }).waitFor({ timeout: 10000 });
         await sleep(300);
         assert.equal(connectionsOf(user).length, 1, 'one socket for both components');
         sendWs(user, { hook: 'hi' });
         await page.locator('#one li', { hasText: 'hi' }).waitFor({ timeout: 10000 });
         await page.locator('#two li', { hasText: 'hi' }).waitFor({ timeout: 10000 });
         await sleep(300);
         assert.equal(await page.locator('#one li').count(), 1);
         assert.equal(await page.locator('#two li').count(), 1);
         assert.deepEqual(errors, []);
       } finally {
         await context.close();
       }
     });

test('the demo page (client/demo) shows the state and the messages, through the built client',
     async () => {
       const user = 'demo';
       fs.writeFileSync(path.join(site, 'demo', 'config.js'),
                        'window.WSNOTIFY_DEMO = {url: "ws://" + location.host + "/", ' +
                        `token: "${mintToken(user)}"};\n`);
       const context = await chromium.browser.newContext({ viewport: { width: 900, height: 560 } });
       try {
         const page = await context.newPage();
         const errors = [];
         page.on('pageerror', (err) => errors.push(err.message));
         await page.goto(`${bridge.url()}demo/`);
         await page.locator('#state', { hasText: 'open' }).waitFor({ timeout: 10000 });
         assert.equal(await page.evaluate(() => typeof window.wsnotifyDemoClient?.open), 'function',
                      'the page runs wsnotify-client');
         await waitFor(() => connectionsOf(user).length === 1, { what: 'the connection row' });
         sendWs(user, { text: 'hello from PostgreSQL' });
         sendWs(user, { order: 42, status: 'shipped' });
         await page.locator('#messages li', { hasText: 'shipped' }).waitFor({ timeout: 10000 });
         assert.equal(await page.locator('#messages li').count(), 2);
         if (features.v1 && features.routes) {
           // the action box: its reply comes back through send()
           addEchoRoute();
           await page.fill('#action-body', '{"text": "hi from the page"}');
           await page.click('#action button');
           await page.locator('#reply', { hasText: 'hi from the page' }).waitFor({ timeout: 10000 });
           assert.equal(await page.locator('#reply').textContent(),
                        `reply: {"echo":"hi from the page","user":"${user}"}`);
         }
         assert.deepEqual(errors, []);
         if (process.env.WSNOTIFY_SCREENSHOT)
           await page.screenshot({ path: process.env.WSNOTIFY_SCREENSHOT });
       } finally {
         await context.close();
       }
     });
