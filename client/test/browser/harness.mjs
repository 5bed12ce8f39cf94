// The browser tests' world: a throwaway PostgreSQL cluster with wsnotify
// preloaded, a real wsnotify-bridge serving a static site that holds the
// built client, and Debian's chromium driven by playwright-core.  The same
// approach as test/e2e/conftest.py, in Node.  Every process started here is
// recorded and stopped at exit, also when a test fails or the run is killed.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CLIENT_DIR = path.resolve(HERE, '..', '..');
export const ROOT = path.resolve(CLIENT_DIR, '..');
export const SECRET = 'browser-test-secret-0123456789abcdef';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PGBIN = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();

/** The bridge binary: $WSNOTIFY_BRIDGE, the tree's build, or the installed one. */
export function bridgeBinary() {
  const candidates = [process.env.WSNOTIFY_BRIDGE, path.join(ROOT, 'bridge', 'wsnotify-bridge'),
                      path.join(PGBIN, 'wsnotify-bridge')];
  const found = candidates.find((p) => p && fs.existsSync(p));
  if (!found) throw new Error('wsnotify-bridge not found: run `make` in the repository first');
  return found;
}

/* ---- cleanup of everything we start ---- */

const children = new Set();
const clusters = new Set();

/** Kill what is still running; synchronous so it also works in 'exit'. */
function cleanupSync() {
  for (const p of children) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
  for (const c of clusters) c.destroySync();
  clusters.clear();
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanupSync();
    process.exit(130);
  });
}

/* ---- small helpers ---- */

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Sleep ms milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll pred() until truthy; throw after timeout ms. */
export async function waitFor(pred, { timeout = 10000, step = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(step);
  }
}

/** An HS256 JWT for `user`, signed with `secret`, expiring in expIn seconds. */
export function mintToken(user, { expIn = 3600, secret = SECRET, extra = {} } = {}) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub: user, exp: Math.floor(Date.now() / 1000) + expIn, ...extra });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** GET a URL on 127.0.0.1: [status, body], [0, ''] when nothing answers. */
export function httpGet(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve([res.statusCode, body]));
    });
    req.on('error', () => resolve([0, '']));
    req.on('timeout', () => { req.destroy(); resolve([0, '']); });
  });
}

/**
 * Send an upgrade request by hand and report the status and the subprotocol
 * the server chose (how the tests learn what this bridge supports).  Status
 * 0: the connection ended with no response.
 */
export function rawUpgrade(port, target, headers = {}) {
  return new Promise((resolve) => {
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      s.destroy();
      const head = data.split('\r\n\r\n')[0];
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      const p = /^sec-websocket-protocol:\s*(.*)$/im.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, protocol: p ? p[1].trim() : '' });
    };
    s.setTimeout(5000, finish);
    s.on('data', (d) => {
      data += d;
      if (data.includes('\r\n\r\n')) finish();
    });
    s.on('error', finish);
    s.on('close', finish);
    s.on('connect', () => s.write(
      `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      `Sec-WebSocket-Version: 13\r\n${extra}\r\n`));
  });
}

/* ---- PostgreSQL ---- */

/** A throwaway cluster owned by the postgres user, with wsnotify preloaded. */
export class Cluster {
  /** Pick a directory and a port; nothing runs yet. */
  constructor(port) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsnotify-browser-'));
    fs.chmodSync(this.dir, 0o777);
    this.data = path.join(this.dir, 'data');
    this.port = port;
    this.log = path.join(this.dir, 'postgres.log');
    this.started = false;
  }

  /** Run a PostgreSQL program as postgres; throw with its output on failure. */
  runAsPostgres(prog, args) {
    const r = spawnSync('runuser', ['-u', 'postgres', '--', path.join(PGBIN, prog), ...args],
                        { cwd: '/', encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${prog} failed: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  /** initdb, configure, start, and create `db` with the extension and a bridge role. */
  init(db) {
    clusters.add(this);
    this.runAsPostgres('initdb', ['-D', this.data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    fs.appendFileSync(path.join(this.data, 'postgresql.conf'), `
port = ${this.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '${this.dir}'
shared_preload_libraries = 'wsnotify'
wsnotify.jwt_secret = '${SECRET}'
fsync = off
synchronous_commit = off
full_page_writes = off
`);
    this.runAsPostgres('pg_ctl', ['-D', this.data, '-l', this.log, '-w', 'start']);
    this.started = true;
    this.psql('postgres', `CREATE DATABASE ${db}`);
    this.psql(db, 'CREATE EXTENSION wsnotify');
    this.psql(db, 'CREATE ROLE bridge LOGIN IN ROLE wsnotify_bridge');
    this.db = db;
  }

  /** Run SQL (one or more statements, each committed) and return psql's unaligned output. */
  psql(db, sql) {
    const r = spawnSync(path.join(PGBIN, 'psql'),
                        ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1',
                         '-p', String(this.port), '-U', 'postgres', '-d', db, '-c', sql],
                        { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** SQL on the test database. */
  sql(sql) {
    return this.psql(this.db, sql);
  }

  /** A psql session of its own on the test database, for transactions left open. */
  session() {
    return new Session(this.port, this.db);
  }

  /** The bridge's connection string. */
  bridgeDsn() {
    return `host=127.0.0.1 port=${this.port} dbname=${this.db} user=bridge`;
  }

  /** Stop at once and remove the directory (idempotent, synchronous). */
  destroySync() {
    if (this.started) {
      spawnSync('runuser', ['-u', 'postgres', '--', path.join(PGBIN, 'pg_ctl'), '-D', this.data,
                            '-m', 'immediate', '-w', 'stop'], { cwd: '/', stdio: 'ignore' });
      this.started = false;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    clusters.delete(this);
  }
}

/**
 * One long-lived psql process: query() runs SQL in it and resolves with the
 * output, so a test can hold a transaction open while others commit.
 */
export class Session {
  /** Start psql on `db` (nothing runs until query()). */
  constructor(port, db) {
    this.proc = spawn(path.join(PGBIN, 'psql'),
                      ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1',
                       '-p', String(port), '-U', 'postgres', '-d', db],
                      { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(this.proc);
    this.proc.on('exit', () => children.delete(this.proc));
    this.out = '';
    this.err = '';
    this.proc.stdout.on('data', (d) => { this.out += d; });
    this.proc.stderr.on('data', (d) => { this.err += d; });
    this.marks = 0;
  }

  /** Run `sql` (statements ending in ;) and resolve with what it printed. */
  async query(sql) {
    const mark = `__wsnotify_mark_${++this.marks}__`;
    this.proc.stdin.write(`${sql}\n\\echo ${mark}\n`);
    await waitFor(() => this.out.includes(mark) || this.proc.exitCode !== null,
                  { what: `psql to run ${sql}` });
    if (!this.out.includes(mark)) throw new Error(`psql failed: ${this.err}`);
    const [before, after] = this.out.split(`${mark}\n`);
    this.out = after ?? '';
    return before.trim();
  }

  /** End the session (an open transaction rolls back). */
  async close() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.stdin.end();
    await exited;
  }
}

/* ---- the bridge ---- */

/** One wsnotify-bridge process; can be killed and restarted on the same port. */
export class Bridge {
  /** A bridge for `cluster` serving `staticDir` on `port`. */
  constructor(cluster, port, staticDir) {
    this.port = port;
    this.logPath = path.join(cluster.dir, `bridge-${port}.log`);
    this.args = ['--dsn', cluster.bridgeDsn(), '--listen', `127.0.0.1:${port}`,
                 '--bridge-id', `browser-${port}`, '--static', staticDir, '-v'];
    this.proc = null;
  }

  /** Start and wait until /healthz answers 200. */
  async start() {
    const log = fs.openSync(this.logPath, 'a');
    this.proc = spawn(bridgeBinary(), this.args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const proc = this.proc;
    children.add(proc);
    proc.on('exit', () => children.delete(proc));
    await waitFor(async () => proc.exitCode !== null ||
                              (await httpGet(`${this.url()}healthz`))[0] === 200,
                  { what: 'the bridge to be healthy' });
    if (proc.exitCode !== null) throw new Error(`the bridge exited:\n${this.log()}`);
    return this;
  }

  /** http://127.0.0.1:PORT/ */
  url() {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** ws://127.0.0.1:PORT/ */
  wsUrl() {
    return `ws://127.0.0.1:${this.port}/`;
  }

  /** The bridge's log so far. */
  log() {
    try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; }
  }

  /** Stop with `signal` and wait for the exit. */
  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
}

/* ---- the static site and the browser ---- */

/** A directory with the built client under dist/ and the test page. */
export function makeSite(dir) {
  const dist = path.join(CLIENT_DIR, 'dist');
  if (!fs.existsSync(path.join(dist, 'index.js')))
    throw new Error('client/dist is missing: run `npm run build` first');
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(dist, path.join(dir, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(HERE, 'page.html'), path.join(dir, 'index.html'));
  // the demo page (client/demo) with the client next to it, as test/demo serves it
  fs.cpSync(path.join(CLIENT_DIR, 'demo'), path.join(dir, 'demo'), { recursive: true });
  fs.cpSync(dist, path.join(dir, 'demo', 'dist'), { recursive: true });
  const react = path.join(CLIENT_DIR, 'node_modules', 'react', 'umd');
  const reactDom = path.join(CLIENT_DIR, 'node_modules', 'react-dom', 'umd');
  if (fs.existsSync(react) && fs.existsSync(reactDom)) {
    fs.mkdirSync(path.join(dir, 'vendor'), { recursive: true });
    fs.copyFileSync(path.join(react, 'react.development.js'),
                    path.join(dir, 'vendor', 'react.js'));
    fs.copyFileSync(path.join(reactDom, 'react-dom.development.js'),
                    path.join(dir, 'vendor', 'react-dom.js'));
    fs.copyFileSync(path.join(HERE, 'react-shim.js'), path.join(dir, 'vendor', 'react-shim.js'));
    fs.copyFileSync(path.join(HERE, 'react-page.html'), path.join(dir, 'react.html'));
    fs.copyFileSync(path.join(HERE, 'react-topics-page.html'), path.join(dir, 'react-topics.html'));
  }
  return dir;
}

/**
 * Debian's chromium, headless, through playwright-core.  Playwright gives it a
 * fresh temporary --user-data-dir of its own and removes it on close.
 */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return { browser, close: () => browser.close().catch(() => {}) };
}

/**
 * A fresh browser context on `url` whose page answers getToken() with
 * token(req) (exposed to it as window.nodeToken) and logs its errors.
 */
export async function openBrowserPage(chromium, url, token) {
  const context = await chromium.browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
  await page.exposeFunction('nodeToken', (req) => token(req));
  await page.goto(url);
  return { page, close: () => context.close() };
}

/**
 * A suite's world: a cluster with database `db` (and `sql` run in it), a
 * bridge serving the test site, and chromium.  Stop it with stopWorld().
 */
export async function startWorld(db, sql = null) {
  const cluster = new Cluster(await freePort());
  cluster.init(db);
  if (sql) cluster.sql(sql);
  const site = makeSite(path.join(cluster.dir, 'site'));
  const bridge = await new Bridge(cluster, await freePort(), site).start();
  return { cluster, site, bridge, chromium: await launchChromium() };
}

/** Stop what startWorld() started (what of it there is). */
export async function stopWorld(world) {
  await world?.chromium?.close();
  await world?.bridge?.stop();
  world?.cluster?.destroySync();
}
