'use strict';
// What the benchmark peers (bench/peers/node, bench/peers/bun) share of their
// outside, so that it is the same by construction: the settings (flags over
// the environment), how a fatal condition is reported (exit 1 with the cause),
// how a NOTIFY payload and a client's subscribe are read.  CommonJS, so that Node's require and
// Bun's import both load it.

// Flags (--port 8080 or --port=8080) override the environment, so a driver
// may use either; the names are the env names in lower case.
function readConfig(argv, env) {
  const opts = { ...env };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z_]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) fail(`unexpected argument ${argv[i]}`);
    const value = m[2] !== undefined ? m[2] : argv[++i];
    if (value === undefined) fail(`--${m[1]} needs a value`);
    opts[m[1].toUpperCase()] = value;
  }
  if (!opts.JWT_SECRET) fail('JWT_SECRET is required (HS256 shared secret)');
  const url = opts.DATABASE_URL;
  // Both database clients parse only URLs; a libpq keyword=value string would
  // be read as a database name and fail later with a misleading error.
  if (url && !url.includes('://') && !url.startsWith('/')) {
    fail('DATABASE_URL must be a URL (postgres://user@host:port/db); for keyword=value use PGHOST, PGPORT, PGDATABASE, PGUSER');
  }
  return {
    port: Number(opts.PORT || 8080),
    host: opts.HOST || '127.0.0.1',
    databaseUrl: url,
    secret: opts.JWT_SECRET,
    channel: opts.CHANNEL || 'wsnotify_peer',
  };
}

// Report a fatal condition on stderr and exit 1.
function fail(message) {
  console.error(`wsnotify-peer: ${message}`);
  process.exit(1);
}

// A payload {"user": id | "*", "data": ...} or {"topic": t, "data": ...}, as
// pg_notify wrote it: { body (the text frame: JSON of data), user, topic }
// (user and topic as strings or undefined), or null for one to ignore.
function readNotification(payload) {
  let note;
  try {
    note = JSON.parse(payload);
  } catch {
    console.error(`wsnotify-peer: ignoring a notification that is not JSON (${payload.length} bytes)`);
    return null;
  }
  if (note === null || typeof note !== 'object' || note.data === undefined) return null;
  return {
    body: JSON.stringify(note.data),
    user: note.user !== undefined ? String(note.user) : undefined,
    topic: note.topic !== undefined ? String(note.topic) : undefined,
  };
}

// The topic of a client's {"action": "subscribe", "topic": t}, or null for
// any other message (not JSON, another action), which the peers ignore.
function subscribeTopic(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    return null;
  }
  return msg && msg.action === 'subscribe' && typeof msg.topic === 'string' ? msg.topic : null;
}

module.exports = { readConfig, fail, readNotification, subscribeTopic };
