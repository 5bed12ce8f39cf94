"""Two bridges behind Debian's nginx, the load balancer users would deploy.

nginx (package nginx-light; installed here if missing and we are root) runs
in the foreground with its own configuration, pid, logs and temp paths in
the test's directory, proxying WebSocket upgrades round-robin to two bridges
(docs/operations.md shows the same configuration).  Clients only ever know
nginx's address.
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess

import pytest
import websockets

from conftest import free_port, run, token, wait_for
from faultkit import V1, Scenario

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 4096; }}
http {{
    # $uri, not $request: the query string holds the token
    log_format wsnotify '$remote_addr [$time_local] "$request_method $uri" $status '
                        '$upstream_addr $request_time';
    access_log {dir}/access.log wsnotify;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream wsnotify_bridges {{
        server 127.0.0.1:{p1} max_fails=1 fail_timeout=2s;
        server 127.0.0.1:{p2} max_fails=1 fail_timeout=2s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://wsnotify_bridges;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_buffering off;
        }}
    }}
}}
"""


def nginx_binary():
    """Debian's nginx; install nginx-light when it is missing and we may."""
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if path is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=False,
                       capture_output=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        path = shutil.which("nginx") or "/usr/sbin/nginx"
    if path is None or not os.path.exists(path):
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return path


class Nginx:
    """nginx in the foreground, balancing over the given bridges."""

    def __init__(self, tmp, bridges):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=self.port,
                                      p1=bridges[0].port, p2=bridges[1].port))
        self.proc = subprocess.Popen([nginx_binary(), "-p", self.dir, "-e",
                                      os.path.join(self.dir, "error.log"), "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.listening() or self.proc.poll() is not None, what="nginx up")
        assert self.proc.poll() is None, self.log()

    def listening(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def ws_url(self, tok=None, path="/"):
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?token={tok}" if tok else "")

    def log(self):
        with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)     # graceful: workers finish, then exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(10)


@pytest.fixture
def balanced(bridges, tmp_path):
    """(nginx, [bridge, bridge]): two bridges behind one nginx."""
    pair = [bridges(), bridges()]
    lb = Nginx(str(tmp_path), pair)
    yield lb, pair
    lb.stop()


def per_bridge(db):
    return dict(db.sql("SELECT bridge_id, count(*) FROM websocket_client GROUP BY 1"))


def test_nginx_spreads_clients_over_both_bridges_and_each_socket_gets_each_message_once(
        balanced, db):
    lb, pair = balanced
    users = [f"u{i}" for i in range(6)]

    async def go():
        socks = {}
        for u in users:   # three sockets per user: round robin puts them on both bridges
            socks[u] = [await websockets.connect(lb.ws_url(token(u)), ping_interval=None,
                                                 max_size=None) for _ in range(3)]
        spread = per_bridge(db)
        assert set(spread) == {b.bridge_id for b in pair} and min(spread.values()) >= 6
        db.sql("SELECT send_ws(u, jsonb_build_object('u', u, 'n', n)) "
               "FROM unnest(%s::text[]) AS u, generate_series(1, 100) AS n", users)
        for n in range(101, 201):
            db.sql("SELECT send_ws(%s, jsonb_build_object('u', %s::text, 'n', %s::int))",
                   users[n % 6], users[n % 6], n)
        for u, ss in socks.items():
            want = list(range(1, 101)) + [n for n in range(101, 201) if users[n % 6] == u]
            for s in ss:
                got = []
                while len(got) < len(want):
                    m = json.loads(await asyncio.wait_for(s.recv(), 10))
                    assert m["u"] == u
                    got.append(m["n"])
                assert got == want
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(s.recv(), 0.05)
        await asyncio.sleep(0.3)   # a duplicate would have arrived by now
        for ss in socks.values():
            for s in ss:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(s.recv(), 0.01)
                await s.close()
    run(go(), timeout=60)
    assert sum(b.metrics()["wsnotify_messages_out_total"] for b in pair) == 3 * (600 + 100)
    with open(os.path.join(lb.dir, "access.log")) as f:
        assert "eyJ" not in f.read(), "a token reached nginx's access log"


def test_bridge_killed_behind_nginx_clients_resume_through_nginx_exactly_once(balanced, db):
    lb, pair = balanced
    users = [f"u{i}" for i in range(5)]
    clients = []
    for u in users:
        clients += [V1(u, lambda: lb), V1(u, lambda: lb), V1(u, lambda: lb, churn=True)]
    victim = pair[0]

    def fault():
        victim.signal(signal.SIGKILL)
        victim.wait()
    sc = Scenario(db, clients, users, total=10000, fault_at=(0.3,))

    async def go():
        # both bridges hold clients before the kill
        task = asyncio.create_task(sc.run(fault))
        while not all(c.connects for c in clients):
            await asyncio.sleep(0.02)
        spread = per_bridge(db)
        assert set(spread) == {b.bridge_id for b in pair}
        return await task
    report = run(go(), timeout=100)
    print("\n", report)
    assert sc.client_errors == []
    assert sc.ledger() == {}, "missing/duplicated/out-of-order messages at the clients"
    assert report["committed"] == 10000
    assert victim.proc.returncode == -signal.SIGKILL
    steady = [c for c in clients if not c.churn]
    # the victim's steady clients lost their socket and resumed through nginx
    assert sum(c.closed_by_server for c in steady) >= 1
