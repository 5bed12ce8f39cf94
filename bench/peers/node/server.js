'use strict';
// The benchmark peer for wsnotify (issue 6): what a web team writes instead
// of it, in the shape the ws, pg and jsonwebtoken READMEs show, so that the
// numbers compare wsnotify against something recognisable rather than a
// straw man.  Kept deliberately plain: no clustering, no batching, no custom
// serialisation — one process, one LISTEN connection.
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');
const { Client } = require('pg');
const jwt = require('jsonwebtoken');
const { readConfig, fail, readNotification, subscribeTopic } = require('../common.js');

const config = readConfig(process.argv.slice(2), process.env);

// userId -> Set<WebSocket>, topic -> Set<WebSocket>; each socket also keeps
// its own topics so that a close costs O(its topics), not O(all topics).
const byUser = new Map();
const byTopic = new Map();
let listening = false;
let stopping = false;

function tokenOf(request) {
  const auth = request.headers.authorization;
  if (auth && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  return new URL(request.url, 'http://localhost').searchParams.get('token');
}

// The user id, or null for a missing, forged, expired or sub-less token.
function authenticate(request) {
  const token = tokenOf(request);
  if (!token) return null;
  try {
    const claims = jwt.verify(token, config.secret, { algorithms: ['HS256'] });
    return typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : null;
  } catch {
    return null;
  }
}

function addTo(map, key, ws) {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(ws);
}

function removeFrom(map, key, ws) {
  const set = map.get(key);
  if (!set) return;
  set.delete(ws);
  if (set.size === 0) map.delete(key);
}

function sendAll(sockets, text) {
  if (!sockets) return;
  for (const ws of sockets) {
    if (ws.readyState === WebSocket.OPEN) ws.send(text);
  }
}

function heartbeat() {
  this.isAlive = true;
}

// A subscribe joins the topic's set and is answered; anything else is ignored.
function onClientMessage(ws, raw) {
  const topic = subscribeTopic(raw);
  if (topic === null) return;
  addTo(byTopic, topic, ws);
  ws.topics.add(topic);
  ws.send(JSON.stringify({ subscribed: topic }));
}

function onConnection(ws, request, userId) {
  ws.isAlive = true;
  ws.userId = userId;
  ws.topics = new Set();
  addTo(byUser, userId, ws);
  ws.on('error', console.error);
  ws.on('pong', heartbeat);
  ws.on('message', (data) => onClientMessage(ws, data));
  ws.on('close', () => {
    removeFrom(byUser, ws.userId, ws);
    for (const topic of ws.topics) removeFrom(byTopic, topic, ws);
  });
}

// Each notification goes to the sockets its payload names (common.js reads it).
function onNotification(wss, msg) {
  const note = readNotification(msg.payload);
  if (note === null) return;
  if (note.user === '*') sendAll(wss.clients, note.body);
  else if (note.user !== undefined) sendAll(byUser.get(note.user), note.body);
  else if (note.topic !== undefined) sendAll(byTopic.get(note.topic), note.body);
}

function onSocketError(err) {
  console.error(`wsnotify-peer: socket error before upgrade: ${err.message}`);
}

function startHttp(wss) {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(listening ? 200 : 503, { 'Content-Type': 'text/plain' });
      res.end(listening ? 'ok' : 'not listening');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  });

  server.on('upgrade', (request, socket, head) => {
    socket.on('error', onSocketError);
    const userId = authenticate(request);
    if (userId === null) {
      socket.write('HTTP/1.1 401 Unauthorized\r\n\r\n');
      socket.destroy();
      return;
    }
    socket.removeListener('error', onSocketError);
    wss.handleUpgrade(request, socket, head, (ws) => {
      wss.emit('connection', ws, request, userId);
    });
  });

  server.on('error', (err) => fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`));
  server.listen(config.port, config.host, () => {
    console.log(`wsnotify-peer: listening on ${config.host}:${config.port}`);
  });
  return server;
}

async function startListen(wss) {
  const client = new Client(config.databaseUrl ? { connectionString: config.databaseUrl } : undefined);
  // A lost LISTEN connection loses notifications silently; exiting makes the
  // loss visible and leaves restarts to the supervisor, as a team would.
  client.on('error', (err) => fail(`database connection lost: ${err.message}`));
  client.on('end', () => {
    if (!stopping) fail('database connection closed');
  });
  client.on('notification', (msg) => onNotification(wss, msg));
  try {
    await client.connect();
    await client.query(`LISTEN ${client.escapeIdentifier(config.channel)}`);
  } catch (err) {
    fail(`cannot LISTEN on ${config.channel}: ${err.message}`);
  }
  listening = true;
  console.log(`wsnotify-peer: LISTEN ${config.channel} active`);
  return client;
}

function main() {
  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', onConnection);

  const interval = setInterval(() => {
    wss.clients.forEach((ws) => {
      if (ws.isAlive === false) return ws.terminate();
      ws.isAlive = false;
      ws.ping();
    });
  }, 30000);
  wss.on('close', () => clearInterval(interval));

  const server = startHttp(wss);
  const db = startListen(wss);

  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`wsnotify-peer: ${signal}, stopping`);
    listening = false;
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    server.close();
    try {
      await (await db).end();
    } catch {
      // already gone; nothing left to release
    }
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
