#!/usr/bin/python3
"""End-to-end check of a benchmark peer: bench/peers/node (Node.js) or
bench/peers/bun (Bun), each a server.js with the same outside.

A benchmark against a peer that drops or misroutes messages would flatter it,
so this proves the routing the benchmark relies on before any number is taken:
per-user delivery, broadcast, topics, 401 for a bad token, and the exact
pg_notify statement the load senders use.  It starts a throwaway PostgreSQL
cluster (test/e2e/conftest.py's Cluster, without the wsnotify library: the peer
must not need it) and the server, and stops both at the end; then it checks that the peer exits 1 when its
LISTEN connection is lost.

Usage: /usr/bin/python3 bench/peers/smoke.py node|bun   (exit 0 = all passed)
"""
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "e2e"))
import jwt  # noqa: E402
import psycopg  # noqa: E402
import websockets  # noqa: E402
from conftest import PGBIN, Cluster, free_port, wait_for  # noqa: E402

SECRET = "peer-smoke-secret-0123456789abcdef"
CHANNEL = "wsnotify_peer"
TIMEOUT = 5.0


class PlainCluster(Cluster):
    """Cluster without shared_preload_libraries: LISTEN/NOTIFY is all the peer uses."""

    def init(self):
        self.run(os.path.join(PGBIN, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                 "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"""
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.dir}'
fsync = off
synchronous_commit = off
""")
        self.start()


def token(sub, secret=SECRET, exp_in=3600):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + exp_in}, secret, algorithm="HS256")


def peer_command(name):
    """The command line that starts peer `name` (its directory is the cwd)."""
    if name == "node":
        return ["node", "server.js"]
    return [os.path.join(HERE, name, "node_modules", ".bin", "bun"), "server.js"]


class Peer:
    """A peer's server.js on a free port, logging to a file in the cluster's directory."""

    def __init__(self, cluster, name):
        self.name = name
        self.dir = os.path.join(HERE, name)
        self.port = free_port()
        self.logpath = os.path.join(cluster.dir, "peer.log")
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1",
                    "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres",
                    "JWT_SECRET": SECRET, "CHANNEL": CHANNEL}
        self.proc = None

    def start(self):
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(peer_command(self.name), cwd=self.dir,
                                     env=self.env, stdout=self.logf, stderr=subprocess.STDOUT)
        wait_for(lambda: self.healthz() == 200 or self.proc.poll() is not None,
                 timeout=20, what="peer /healthz")
        if self.proc.poll() is not None:
            raise AssertionError(f"server.js exited {self.proc.returncode}:\n{self.log()}")

    def healthz(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def url(self, tok=None):
        return f"ws://127.0.0.1:{self.port}/" + (f"?token={tok}" if tok else "")

    def stop(self):
        """SIGTERM; the exit code, which must be 0 for a clean shutdown."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode

    def log(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.logpath, errors="replace") as f:
            return f.read()


def notify(conn, payload):
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(payload)))


async def recv(ws, what):
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    except asyncio.TimeoutError:
        raise AssertionError(f"no message within {TIMEOUT}s: {what}") from None


async def expect_401(url, headers=None, what=""):
    try:
        ws = await websockets.connect(url, extra_headers=headers or {})
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == 401, f"{what}: status {e.status_code}, expected 401"
        return
    await ws.close()
    raise AssertionError(f"{what}: connection accepted, expected 401")


async def check(peer, conn):
    # Notifications reach the one LISTEN connection in commit order and the
    # server handles them in that order, so "the next frame a socket gets is
    # the broadcast" proves it did not get the earlier message meant for others.
    u1a = await websockets.connect(peer.url(token("u1")))
    u1b = await websockets.connect(peer.url(), extra_headers={"Authorization": f"Bearer {token('u1')}"})
    u2 = await websockets.connect(peer.url(token("u2")))
    u3 = await websockets.connect(peer.url(token("u3")), subprotocols=["wsnotify.v1"])
    assert u3.subprotocol == "wsnotify.v1", u3.subprotocol

    await u3.send(json.dumps({"action": "subscribe", "topic": "x"}))
    assert await recv(u3, "subscribe reply") == {"subscribed": "x"}
    await u2.send("not json")
    await u2.send(json.dumps({"action": "dance"}))
    await u2.send(json.dumps({"action": "subscribe", "topic": "y"}))
    assert await recv(u2, "subscribe reply after ignored messages") == {"subscribed": "y"}

    notify(conn, {"user": "u1", "data": {"n": 1}})
    conn.execute("SELECT pg_notify(%s, 'not json')", (CHANNEL,))
    notify(conn, {"user": "u1"})
    notify(conn, {"topic": "x", "data": {"n": 2}})
    notify(conn, {"user": "*", "data": {"n": 3, "s": "é"}})
    assert await recv(u1a, "u1a per-user") == {"n": 1}
    assert await recv(u1b, "u1b per-user (Bearer header)") == {"n": 1}
    assert await recv(u3, "u3 topic x") == {"n": 2}
    for name, ws in (("u1a", u1a), ("u1b", u1b), ("u2", u2), ("u3", u3)):
        assert await recv(ws, f"{name} broadcast") == {"n": 3, "s": "é"}, name

    # The load senders' statement, verbatim but for the range: t must survive
    # as an integer (µs since the epoch), close to now.
    conn.execute(
        "SELECT pg_notify('wsnotify_peer', json_build_object('user', 'u' || k, 'data', "
        "json_build_object('t', (extract(epoch from clock_timestamp())*1e6)::bigint))::text) "
        "FROM generate_series(1, 3) k")
    for name, ws in (("u1a", u1a), ("u1b", u1b), ("u2", u2), ("u3", u3)):
        msg = await recv(ws, f"{name} sender statement")
        assert isinstance(msg.get("t"), int) and abs(msg["t"] / 1e6 - time.time()) < 60, msg

    # A closed socket leaves its user's set and its topics: later sends to
    # them must not error in the server (checked in the log below).
    await u1a.close()
    await u3.close()
    await asyncio.sleep(0.2)
    notify(conn, {"user": "u1", "data": {"n": 4}})
    notify(conn, {"topic": "x", "data": {"n": 5}})
    notify(conn, {"user": "*", "data": {"n": 6}})
    assert await recv(u1b, "u1b after u1a closed") == {"n": 4}
    assert await recv(u1b, "u1b broadcast after closes") == {"n": 6}
    assert await recv(u2, "u2 broadcast after closes") == {"n": 6}

    await expect_401(peer.url(), what="no token")
    await expect_401(peer.url(token("u1", secret="wrong-secret-0123456789abcdef")), what="bad signature")
    await expect_401(peer.url(token("u1", exp_in=-60)), what="expired token")
    await expect_401(peer.url(), {"Authorization": "Bearer garbage"}, what="garbage Bearer")
    none_alg = jwt.encode({"sub": "u1"}, None, algorithm="none")
    await expect_401(peer.url(none_alg), what="alg none")
    await u1b.close()
    await u2.close()


def ensure_modules(name):
    """npm ci in the peer's directory when its node_modules is missing."""
    d = os.path.join(HERE, name)
    if not os.path.isdir(os.path.join(d, "node_modules")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=d, check=True)


def check_lost_listen(peer, conn):
    """The LISTEN connection's backend is terminated: the peer must exit 1
    with the cause (it would otherwise lose notifications silently)."""
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE query ILIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
    try:
        code = peer.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("the peer did not exit when its LISTEN connection was lost") from None
    assert code == 1, f"exit code {code} on a lost LISTEN connection, expected 1"
    assert "database connection" in peer.log(), peer.log()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("peer", choices=["node", "bun"])
    name = ap.parse_args().peer
    ensure_modules(name)
    cluster = PlainCluster()
    peer = None
    passed = 0
    try:
        cluster.init()
        peer = Peer(cluster, name)
        peer.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            asyncio.run(check(peer, conn))
        log = peer.log()
        code = peer.stop()
        assert code == 0, f"server.js exited {code} on SIGTERM:\n{log}"
        assert "eyJ" not in log, "a token reached the log"
        assert "Error" not in log, f"errors in the server log:\n{log}"
        assert "not JSON" in log, f"the bad notification was not reported:\n{log}"
        assert "LISTEN wsnotify_peer active" in log, log
        passed += 1
        peer = Peer(cluster, name)
        peer.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            check_lost_listen(peer, conn)
        passed += 1
    except Exception:
        print(f"FAIL:\n{traceback.format_exc()}", file=sys.stderr)
        if peer and peer.proc:
            print(f"--- server log ---\n{peer.log()}", file=sys.stderr)
        return 1
    finally:
        if peer:
            peer.stop()
        cluster.destroy()
    print(f"{name} peer smoke: {passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
