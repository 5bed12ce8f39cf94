"""Fixtures for the wsnotify-bridge end-to-end suite.

A throwaway PostgreSQL cluster (run as user postgres, on a free 127.0.0.1
port, with wsnotify preloaded and a JWT secret) is shared by the session;
every test gets a fresh database cloned from a template that already has the
extension, and starts its own bridge processes, which are stopped at the end
of the test.  Clients are real WebSocket clients (python3-websockets).
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import itertools

import jwt
import psycopg
import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "e2e-test-secret-0123456789abcdef"
PGBIN = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
BRIDGE = os.environ.get("WSNOTIFY_BRIDGE") or os.path.join(ROOT, "bridge", "wsnotify-bridge")
if not os.path.exists(BRIDGE):
    BRIDGE = os.path.join(PGBIN, "wsnotify-bridge")
_dbseq = itertools.count(1)


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, step=0.02, what="condition"):
    """Poll pred() until it is truthy; fail after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def token(user, exp_in=3600, **extra):
    """An HS256 JWT for user, signed with the cluster's secret."""
    claims = {"sub": user, "exp": int(time.time()) + exp_in, **extra}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Cluster:
    """A throwaway PostgreSQL cluster owned by the postgres user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wsnotify-e2e-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.log = os.path.join(self.dir, "postgres.log")

    def run(self, *args, check=True):
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=check,
                              capture_output=True, text=True, cwd="/")

    def init(self):
        self.run(os.path.join(PGBIN, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                 "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"""
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.dir}'
shared_preload_libraries = 'wsnotify'
wsnotify.jwt_secret = '{SECRET}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
""")
        self.start()

    def start(self):
        self.run(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "start")

    def stop(self, mode="fast"):
        self.run(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop",
                 check=False)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def dsn(self, db, user="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={db} user={user}"

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def add_template(cluster):
    """Create wsnotify_template (the extension, and the bridge role) in a started
    Cluster; Database(cluster) clones it.  The bench scripts and test/soak call
    it on their own clusters."""
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE wsnotify_template")
    with psycopg.connect(cluster.dsn("wsnotify_template"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION wsnotify")
        conn.execute("CREATE ROLE bridge LOGIN IN ROLE wsnotify_bridge")


@pytest.fixture(scope="session")
def cluster():
    c = Cluster()
    c.init()
    add_template(c)
    yield c
    c.destroy()


class Database:
    """A fresh database with the extension, for one test."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.name = f"t{os.getpid()}_{next(_dbseq)}"
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name} TEMPLATE wsnotify_template")
        self.bridge_dsn = cluster.dsn(self.name, "bridge")

    def connect(self, autocommit=True):
        return psycopg.connect(self.cluster.dsn(self.name), autocommit=autocommit)

    def sql(self, query, *params):
        """Run one statement in its own committed transaction; return all rows."""
        with self.connect() as conn:
            cur = conn.execute(query, params or None)
            return cur.fetchall() if cur.description else None

    def drop(self):
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


@pytest.fixture
def db(cluster):
    d = Database(cluster)
    yield d
    d.drop()


def http_get(port, path):
    """(status, body) of a GET to 127.0.0.1:port, (0, '') when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def parse_metrics(text):
    """A /metrics page as {name{labels}: value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


class Bridge:
    """One wsnotify-bridge process on a free port."""

    def __init__(self, db, args=(), config=None, bridge_id=None, tmp=None):
        self.db = db
        self.port = free_port()
        self.dir = tmp or tempfile.mkdtemp(prefix="wsnotify-bridge-")
        self.logpath = os.path.join(self.dir, f"bridge-{self.port}.log")
        self.bridge_id = bridge_id or f"e2e-{self.port}"
        self.args = [BRIDGE, "--dsn", db.bridge_dsn, "--listen", f"127.0.0.1:{self.port}",
                     "--bridge-id", self.bridge_id, "--heartbeat-interval", "500ms",
                     "--reconnect-min", "50ms", "--reconnect-max", "500ms", "-v", *args]
        if config is not None:
            self.config = os.path.join(self.dir, f"bridge-{self.port}.ini")
            with open(self.config, "w") as f:
                f.write(config)
            self.args += ["-c", self.config]
        self.proc = None

    env = None

    def start(self, wait=True):
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env)
        if wait:
            wait_for(lambda: self.healthz()[0] == 200 or self.proc.poll() is not None,
                     what="bridge healthy")
            assert self.proc.poll() is None, self.log()
        return self

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, tok=None, path="/"):
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?token={tok}" if tok else "")

    def get(self, path):
        """(status, body) of a GET, (0, '') when nothing answers."""
        return http_get(self.port, path)

    def healthz(self):
        return self.get("/healthz")

    def metrics(self):
        """Metrics as {name{labels}: value}."""
        return parse_metrics(self.get("/metrics")[1])

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=15):
        return self.proc.wait(timeout)

    def log(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()


@pytest.fixture
def bridges(db, tmp_path):
    """Factory: bridges(args=..., config=...) starts a bridge on db; all stopped at the end."""
    started = []
    os.chmod(tmp_path, 0o755)

    def make(args=(), config=None, start=True, bridge_id=None, database=None):
        b = Bridge(database or db, args, config, bridge_id, str(tmp_path))
        started.append(b)
        return b.start() if start else b

    yield make
    for b in started:
        b.stop()
    # no log line of any bridge may hold a token
    for b in started:
        if b.proc:
            assert "eyJ" not in b.log(), "a token reached the log"


@pytest.fixture
def bridge(bridges):
    return bridges()


def run(coro, timeout=30):
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(b, user, **kw):
    """Open a WebSocket to bridge b as user."""
    return await websockets.connect(b.ws_url(token(user)), max_size=None, ping_interval=None,
                                    **kw)


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect_silence(ws, seconds=0.5):
    """Assert that nothing arrives within seconds."""
    try:
        msg = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message {msg[:200]!r}")


def upgrade_request(port, target="/", headers=()):
    """The bytes of the upgrade request raw_upgrade and send_upgrade send."""
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n" + "".join(f"{h}\r\n" for h in headers)
            + "\r\n").encode()


def send_upgrade(s, port, target="/", headers=()):
    """Send an upgrade request by hand on socket s; return what was read up to
    the end of the response head (and maybe past it), or until EOF."""
    s.sendall(upgrade_request(port, target, headers))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def raw_upgrade(port, target="/", headers=()):
    """Send an upgrade request by hand; return (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head, _, body = send_upgrade(s, port, target, headers).partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        if status != 101:
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except OSError:
                pass
        return status, body.decode(errors="replace")


def rows_of(db, bridge_id=None):
    q = "SELECT connection_id, user_id, bridge_id FROM websocket_client"
    if bridge_id:
        return db.sql(q + " WHERE bridge_id = %s", bridge_id)
    return db.sql(q)
