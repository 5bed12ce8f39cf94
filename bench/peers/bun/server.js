// The second benchmark peer for wsnotify (issue 21): the fastest stack a team
// could pick instead of it, written the way Bun's documentation shows for
// speed: Bun.serve's WebSocket server (uWebSockets underneath) with its native
// pub/sub (ws.subscribe, server.publish) for broadcast and topics, a Map from
// user to sockets for per-user sends, jose for HS256, and Bun's SQL client for
// the one LISTEN.  The outside is bench/peers/node's: the same settings, NOTIFY
// channel and payloads, 401s, subscribe reply, /healthz and exit codes, so
// that bench/run.py drives both alike.  One process, no clustering.
import { SQL } from 'bun';
import { jwtVerify } from 'jose';
import { readConfig, fail, readNotification, subscribeTopic } from '../common.js';

// Topic names on the native pub/sub: every socket is subscribed to BROADCAST;
// a client's topic x is TOPIC_PREFIX + x, so that no client topic can be it.
const BROADCAST = 'broadcast';
const TOPIC_PREFIX = 'topic:';

const config = readConfig(process.argv.slice(2), process.env);
const encoder = new TextEncoder();
// userId -> Set<ServerWebSocket>
const byUser = new Map();
let listening = false;
let stopping = false;

// The HS256 key, imported once: jose takes a CryptoKey as it is, where a raw
// Uint8Array secret would be imported again on every verify.
const keyPromise = crypto.subtle.importKey('raw', encoder.encode(config.secret),
  { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);

function tokenOf(req, url) {
  const auth = req.headers.get('authorization');
  if (auth && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  return url.searchParams.get('token');
}

// The user id, or null for a missing, forged, expired or sub-less token.
async function authenticate(req, url) {
  const token = tokenOf(req, url);
  if (!token) return null;
  try {
    const { payload } = await jwtVerify(token, await keyPromise, { algorithms: ['HS256'] });
    return typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : null;
  } catch {
    return null;
  }
}

// The subprotocol to accept: the client's first, as the ws library does.
function firstProtocol(req) {
  const offered = req.headers.get('sec-websocket-protocol');
  return offered ? offered.split(',')[0].trim() : null;
}

function text(status, body) {
  return new Response(body, { status, headers: { 'Content-Type': 'text/plain' } });
}

// /healthz, and the upgrade of an authenticated request; anything else 404.
async function onRequest(req, server) {
  const url = new URL(req.url);
  if (url.pathname === '/healthz') {
    return listening ? text(200, 'ok') : text(503, 'not listening');
  }
  if (req.headers.get('upgrade')?.toLowerCase() !== 'websocket') return text(404, 'not found');
  const userId = await authenticate(req, url);
  if (userId === null) return new Response(null, { status: 401 });
  const protocol = firstProtocol(req);
  const headers = protocol ? { 'Sec-WebSocket-Protocol': protocol } : undefined;
  if (server.upgrade(req, { data: { userId }, headers })) return undefined;
  return text(400, 'upgrade failed');
}

function onOpen(ws) {
  ws.subscribe(BROADCAST);
  let set = byUser.get(ws.data.userId);
  if (!set) byUser.set(ws.data.userId, (set = new Set()));
  set.add(ws);
}

// A subscribe joins the native topic and is answered; anything else is ignored.
function onClientMessage(ws, raw) {
  const topic = subscribeTopic(raw);
  if (topic === null) return;
  ws.subscribe(TOPIC_PREFIX + topic);
  ws.send(JSON.stringify({ subscribed: topic }));
}

// The native pub/sub drops a closed socket's subscriptions itself; the user
// map is ours to clean.
function onClose(ws) {
  const set = byUser.get(ws.data.userId);
  if (!set) return;
  set.delete(ws);
  if (set.size === 0) byUser.delete(ws.data.userId);
}

// Broadcasts and topics go through the native pub/sub, per-user sends
// through the user map (common.js reads the payload).
function onNotification(server, payload) {
  const note = readNotification(payload);
  if (note === null) return;
  if (note.user === '*') server.publish(BROADCAST, note.body);
  else if (note.user !== undefined) {
    const set = byUser.get(note.user);
    if (set) for (const ws of set) ws.send(note.body);
  } else if (note.topic !== undefined) server.publish(TOPIC_PREFIX + note.topic, note.body);
}

function startServer() {
  try {
    return Bun.serve({
      hostname: config.host,
      port: config.port,
      fetch: onRequest,
      websocket: {
        open: onOpen,
        message: onClientMessage,
        close: onClose,
        // The heartbeat the docs show: Bun pings a silent socket and closes one
        // that stays silent for idleTimeout seconds (the Node peer: 30 s pings).
        idleTimeout: 60,
        sendPings: true,
      },
    });
  } catch (err) {
    fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`);
  }
}

// One LISTEN on its own connection (Bun's sql.listen opens a dedicated one).
// Bun re-subscribes after a lost connection, but whatever was sent meanwhile
// is lost silently; as in the Node peer, the peer exits 1 instead, leaving
// restarts to the supervisor, so onclose of that connection ends the process.
async function startListen(server) {
  const sql = new SQL({
    ...(config.databaseUrl ? { url: config.databaseUrl } : {}),
    max: 1,
    onclose(err) {
      if (!stopping) fail(`database connection lost: ${err ? err.message : 'closed'}`);
    },
  });
  let subscription;
  try {
    subscription = await sql.listen(config.channel, (payload) => onNotification(server, payload),
      () => {
        if (listening && !stopping) fail('database connection lost and LISTEN renewed: notifications may be lost');
      });
  } catch (err) {
    fail(`cannot LISTEN on ${config.channel}: ${err.message}`);
  }
  listening = true;
  console.log(`wsnotify-peer: LISTEN ${config.channel} active`);
  return { sql, subscription };
}

async function main() {
  const server = startServer();
  console.log(`wsnotify-peer: listening on ${config.host}:${config.port}`);
  const db = startListen(server);

  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`wsnotify-peer: ${signal}, stopping`);
    listening = false;
    server.stop(true);
    try {
      const { sql } = await db;
      await sql.close({ timeout: 1 });
    } catch {
      // already gone; nothing left to release
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main();
