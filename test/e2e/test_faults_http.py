"""Hostile and broken clients at the HTTP and WebSocket framing level, and a
database that refuses connections when the bridge starts.

Already covered elsewhere (not repeated here): a peer that stops answering
pings (test_resilience), a client message over max_message_size (1009,
test_delivery), binary frames (1003) and invalid UTF-8 (1007, test_routes).
"""
import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time

import pytest
import websockets

from conftest import connect, raw_upgrade, recv_json, rows_of, run, token, wait_for
from test_routes import route


def open_raw_ws(port, user="alice", rcvbuf=None):
    """A WebSocket opened by hand on a plain socket; returns (socket, bytes after the head)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    head, rest = upgrade_on(s, token(user))
    assert head.split()[1] == b"101", head
    return s, rest


def upgrade_on(s, tok):
    """Send an upgrade request on the connected socket s (plain or TLS);
    return (response head, bytes read after it)."""
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /?token={tok} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "closed during the upgrade"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def frame(opcode, payload, fin=True):
    """One masked client frame."""
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


class FrameReader:
    """Reads server frames (unmasked) from a raw socket."""

    def __init__(self, s, buf=b""):
        self.s, self.buf = s, buf

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def next(self):
        """(opcode, payload) of the next frame."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0F, payload


def close_code(r):
    """Code of the close frame that ends what FrameReader r reads; EOFError
    when the connection drops without one."""
    op, payload = r.next()
    while op != 8:
        op, payload = r.next()
    return struct.unpack("!H", payload[:2])[0]


def closed_by_peer(s, timeout):
    """True when the peer closes s (EOF or reset) within timeout seconds."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def send_head(port, data, read=True, timeout=5):
    """Send raw bytes; return what the bridge answered before closing (b'' if nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        if read:
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except (socket.timeout, ConnectionResetError):
                pass
        return out


# ---- a client that vanishes without FIN ----------------------------------

def test_client_that_vanishes_without_fin_is_closed_by_keepalive_and_its_row_removed(bridges, db):
    b = bridges(args=["--ping-interval", "300ms", "--ping-timeout", "500ms"])
    # the socket stays open on our side: no FIN, no RST, it just never reads
    # (so never answers a ping) while messages keep coming
    s, _ = open_raw_ws(b.port, rcvbuf=4096)
    wait_for(lambda: len(rows_of(db)) == 1, what="row made")
    for i in range(20):
        db.sql("SELECT send_ws('alice', jsonb_build_object('i', %s::int))", i)
    wait_for(lambda: rows_of(db) == [], timeout=10, what="row of the vanished client removed")
    assert b.metrics()["wsnotify_ping_timeouts_total"] >= 1
    assert b.healthz()[0] == 200
    s.close()


def test_client_that_answers_pings_stays_connected_past_ping_timeout(bridges, db):
    # lws 4.1 reports no pong for an empty ping: every silent but healthy
    # client was closed at ping_interval + ping_timeout (40 s by default)
    b = bridges(args=["--ping-interval", "300ms", "--ping-timeout", "300ms"])

    async def go():
        ws = await websockets.connect(b.ws_url(token("alice")), ping_interval=None)
        await asyncio.sleep(3)               # websockets answers pings by itself
        db.sql("SELECT send_ws('alice', '{\"still\": \"here\"}')")
        assert await recv_json(ws) == {"still": "here"}
        await ws.close()
    run(go())
    assert b.metrics()["wsnotify_ping_timeouts_total"] == 0


# ---- half-finished and malformed upgrades ---------------------------------

def test_head_cut_off_mid_way_leaves_no_row_and_the_bridge_serving(bridge, db):
    for cut in (5, 30, 80):
        req = (f"GET /?token={token('alice')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        send_head(bridge.port, req[:cut], read=False)
    time.sleep(0.3)
    assert rows_of(db) == []
    assert raw_upgrade(bridge.port, f"/?token={token('alice')}")[0] == 101


def test_client_gone_while_its_upgrade_waits_for_the_database_leaves_no_row(bridge, db):
    # the head is complete (the gate asks the database) but the client is gone at once
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", bridge.port))
        s.sendall((f"GET /?token={token('alice')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                            # RST
    wait_for(lambda: rows_of(db) == [], what="no rows left")
    time.sleep(1)
    assert rows_of(db) == []
    assert bridge.healthz()[0] == 200


@pytest.mark.parametrize("head", [
    b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon\r\nUpgrade: websocket\r\n\r\n",
    b"GET /\x00?token=x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nHost: \xff\xfe\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",   # TLS hello
    b"GET / HTTP/1.1\r\n" + b"Upgrade: websocket\r\n" * 3 + b"\r\n",
], ids=["empty", "garbage", "no-target", "no-colon", "nul-byte", "non-utf8", "tls-hello", "repeated"])
def test_malformed_upgrade_gets_4xx_and_the_bridge_keeps_serving(bridge, db, head):
    answer = send_head(bridge.port, head)
    if answer:
        status = int(answer.split()[1])
        assert 400 <= status < 500, answer[:200]
    assert rows_of(db) == []
    assert raw_upgrade(bridge.port, f"/?token={token('alice')}")[0] == 101


def test_upgrade_without_key_or_with_an_unknown_version_is_not_accepted(bridge, db):
    # lws refuses these after the database authorized them: this once freed the
    # connection twice and took the bridge down (gate_handoff)
    for extra in ("Sec-WebSocket-Version: 13\r\n",
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n"):
        answer = send_head(bridge.port, (f"GET /?token={token('alice')} HTTP/1.1\r\nHost: x\r\n"
                                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                         f"{extra}\r\n").encode())
        assert answer.split()[1] in (b"400", b"426"), answer[:200]
    assert rows_of(db) == []
    assert raw_upgrade(bridge.port, f"/?token={token('alice')}")[0] == 101


# ---- header floods ---------------------------------------------------------

def test_flood_of_many_small_headers_gets_431(bridges):
    b = bridges(args=["--max-header-size", "4KiB"])
    head = (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n" +
            b"".join(b"X-%d: y\r\n" % i for i in range(2000)) + b"\r\n")
    answer = send_head(b.port, head)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert b.healthz()[0] == 200


def test_one_huge_header_gets_431(bridge):
    head = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"
    answer = send_head(bridge.port, head)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert bridge.healthz()[0] == 200


def test_many_concurrent_header_floods_do_not_stop_other_clients(bridges, db):
    b = bridges(args=["--max-header-size", "2KiB"])
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", b.port))
        s.sendall(b"GET / HTTP/1.1\r\n" + b"X: " + b"z" * 1000 + b"\r\n")   # still within the limit
        socks.append(s)
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 101
    assert b.healthz()[0] == 200
    for s in socks:
        s.close()


# ---- oversized frames ------------------------------------------------------

def test_frame_announcing_an_oversized_length_is_closed_without_reading_it(bridges, db):
    b = bridges(args=["--max-message-size", "64KiB"])
    s, rest = open_raw_ws(b.port)
    # a header that announces 1 GiB, then a trickle: the bridge must not wait for it
    s.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 30) + b"\0\0\0\0" + b"x" * 100)
    assert close_code(FrameReader(s, rest)) == 1009
    wait_for(lambda: rows_of(db) == [], what="row removed")
    s.close()


def test_frame_with_a_64_bit_length_over_2_63_is_a_protocol_error(bridge, db):
    s, rest = open_raw_ws(bridge.port)
    s.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, (1 << 64) - 1) + os.urandom(4))
    assert closed_by_peer(s, 5)
    wait_for(lambda: rows_of(db) == [], what="row removed")
    assert bridge.healthz()[0] == 200


def test_oversized_control_frame_closes_the_connection(bridge, db):
    s, rest = open_raw_ws(bridge.port)
    s.sendall(frame(0x9, b"p" * 200))          # a ping may carry 125 bytes at most
    assert closed_by_peer(s, 5)
    wait_for(lambda: rows_of(db) == [], what="row removed")


# ---- fragmentation and interleaved control frames --------------------------

def test_ping_between_fragments_is_answered_and_the_message_arrives_whole(bridge, db):
    route(db, "echo", "SELECT jsonb_build_object('got', m->'text')")
    s, rest = open_raw_ws(bridge.port)
    msg = json.dumps({"action": "echo", "text": "fragmented " * 50}).encode()
    # (pings sent back to back get one pong between them from lws, which RFC
    # 6455 5.5.3 allows; these are spaced so that each is answered)
    s.sendall(frame(0x1, msg[:10], fin=False))
    s.sendall(frame(0x9, b"are you there"))
    time.sleep(0.2)
    s.sendall(frame(0x0, msg[10:200], fin=False))
    s.sendall(frame(0xA, b"unsolicited pong"))   # allowed, ignored
    s.sendall(frame(0x9, b"again"))
    time.sleep(0.2)
    s.sendall(frame(0x0, msg[200:], fin=True))
    r = FrameReader(s, rest)
    got = [r.next()]
    while got[-1][0] != 0x1:
        got.append(r.next())
    pongs = [p for op, p in got if op == 0xA]
    assert pongs == [b"are you there", b"again"], got
    assert json.loads(got[-1][1]) == {"got": "fragmented " * 50}
    s.sendall(frame(0x9, b"after"))         # and the connection still answers
    assert r.next() == (0xA, b"after")
    s.close()


def test_continuation_without_a_start_closes_with_1002(bridge, db):
    s, rest = open_raw_ws(bridge.port)
    s.sendall(frame(0x0, b"orphan", fin=True))
    assert close_code(FrameReader(s, rest)) == 1002
    wait_for(lambda: rows_of(db) == [], what="row removed")
    assert bridge.healthz()[0] == 200


def test_new_text_frame_inside_a_fragmented_message_closes_with_1002(bridge, db):
    s, rest = open_raw_ws(bridge.port)
    s.sendall(frame(0x1, b'{"a":', fin=False) + frame(0x1, b'{"b": 1}'))
    assert close_code(FrameReader(s, rest)) == 1002
    wait_for(lambda: rows_of(db) == [], what="row removed")


def test_fragments_adding_up_past_max_message_size_close_with_1009(bridges, db):
    b = bridges(args=["--max-message-size", "1KiB"])
    s, rest = open_raw_ws(b.port)
    for _ in range(10):
        s.sendall(frame(0x1 if _ == 0 else 0x0, b"x" * 200, fin=False))
    assert close_code(FrameReader(s, rest)) == 1009
    wait_for(lambda: rows_of(db) == [], what="row removed")


# ---- the database refusing connections at start ------------------------------

class Forwarder(threading.Thread):
    """A TCP forwarder from a local port to the database, started on demand."""

    def __init__(self, port, target):
        super().__init__(daemon=True)
        self.port, self.target, self.stopping = port, target, False

    def run(self):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        srv.settimeout(0.2)
        while not self.stopping:
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()
        srv.close()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_database_down_at_start_bridge_waits_with_503_then_serves(bridges, db, cluster):
    from conftest import free_port
    port = free_port()                       # nothing listens there yet: connection refused
    b = bridges(args=["--dsn", f"host=127.0.0.1 port={port} dbname={db.name} user=bridge"],
                start=False)
    b.start(wait=False)
    wait_for(lambda: b.healthz()[0] == 503, what="healthz 503 while the database is down")
    time.sleep(1.5)                          # several failed attempts, still alive and 503
    assert b.proc.poll() is None
    assert b.healthz()[0] == 503
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 503
    fwd = Forwarder(port, cluster.port)
    fwd.start()
    try:
        wait_for(lambda: b.healthz()[0] == 200, timeout=15, what="healthz 200 once it is up")

        async def go():
            ws = await connect(b, "alice")
            db.sql("SELECT send_ws('alice', '{\"up\": true}')")
            assert await recv_json(ws) == {"up": True}
            await ws.close()
        run(go())
    finally:
        b.stop()
        fwd.stopping = True


def test_database_refusing_the_login_at_start_bridge_waits_then_serves(bridges, db):
    db.sql("ALTER ROLE bridge NOLOGIN")
    try:
        b = bridges(start=False)
        b.start(wait=False)
        wait_for(lambda: b.healthz()[0] == 503, what="healthz 503 while login is refused")
        time.sleep(1)
        assert b.proc.poll() is None
    finally:
        db.sql("ALTER ROLE bridge LOGIN")
    wait_for(lambda: b.healthz()[0] == 200, timeout=15, what="healthz 200 once login works")
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 101


def test_database_out_of_space_or_memory_in_a_handler_is_an_error_frame_not_a_hang(bridge, db):
    """Resource errors on the database side (temp_file_limit standing in for a
    full disk, an allocation too large standing in for out-of-memory) come
    back as error frames within the request, and the connection serves on."""
    import json as _json
    from test_routes import route
    from test_resume import connect_v1 as _connect_v1
    route(db, "disk", "SET LOCAL temp_file_limit = '64kB'; "
                      "SELECT to_jsonb(count(*)) FROM (SELECT g FROM generate_series(1, 200000) g "
                      "ORDER BY g DESC) s", lang="sql")
    route(db, "memory", "SELECT to_jsonb(length(repeat('x', 1024 * 1024 * 1024 + 1)))")
    route(db, "ok", "SELECT '\"fine\"'::jsonb")

    async def go():
        ws = await _connect_v1(bridge, "alice")
        for action in ("disk", "memory"):
            await ws.send(_json.dumps({"action": action, "request_id": action}))
            frame = await recv_json(ws, timeout=10)
            assert (frame["type"], frame["request_id"]) == ("error", action), frame
        await ws.send(_json.dumps({"action": "ok", "request_id": "ok"}))
        assert (await recv_json(ws))["data"] == "fine"
        await ws.close()
    run(go())
    log = bridge.log()
    assert "temp_file_limit" in log or "temporary file size" in log
    assert "too large" in log or "out of memory" in log
