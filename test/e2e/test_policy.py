"""Connection policy: per-user cap, per-address connect and failed-authentication
rate limits, close_on_token_expiry, and the handshake timeout (slowloris)."""
import asyncio
import socket
import time

import pytest
import websockets

from conftest import connect, raw_upgrade, rows_of, run, send_upgrade, token, wait_for


def upgrade_head(port, target):
    """Status line and headers of an upgrade, as a dict with 'status'."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = send_upgrade(s, port, target)
    lines = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    out = {"status": int(lines[0].split()[1])}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def test_user_over_max_connections_per_user_gets_429_and_no_row(bridges, db):
    b = bridges(args=["--max-connections-per-user", "2"])

    async def go():
        a1 = await connect(b, "alice")
        a2 = await connect(b, "alice")
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await connect(b, "alice")
        assert e.value.status_code == 429
        bob = await connect(b, "bob")        # other users are not affected
        assert sorted(r[1] for r in rows_of(db)) == ["alice", "alice", "bob"]
        await a1.close()
        wait_for(lambda: len(rows_of(db)) == 2, what="row of the closed socket removed")
        a3 = await connect(b, "alice")       # a slot freed by a close is usable again
        for ws in (a2, a3, bob):
            await ws.close()
    run(go())


def test_connect_rate_limit_per_address_gets_429_with_retry_after(bridges):
    b = bridges(args=["--connect-rate-limit", "3"])
    statuses = [upgrade_head(b.port, f"/?token={token('alice')}") for _ in range(6)]
    codes = [s["status"] for s in statuses]
    assert codes[:3] == [101, 101, 101]
    assert 429 in codes[3:]
    limited = next(s for s in statuses if s["status"] == 429)
    assert int(limited["retry-after"]) >= 1
    assert b.metrics()['wsnotify_auth_failures_total{reason="rate_limited"}'] >= 1
    time.sleep(1.2)                          # the bucket refills
    assert upgrade_head(b.port, f"/?token={token('alice')}")["status"] == 101


def test_failed_authentications_past_the_limit_get_429_even_with_a_good_token(bridges):
    b = bridges(args=["--auth-failure-rate-limit", "3"])
    for _ in range(3):
        assert raw_upgrade(b.port, "/?token=not.a.token")[0] == 401
    head = upgrade_head(b.port, f"/?token={token('alice')}")
    assert head["status"] == 429
    assert 1 <= int(head["retry-after"]) <= 60
    # decided without asking the database: no fourth verification happened
    m = b.metrics()
    assert m['wsnotify_auth_failures_total{reason="invalid_token"}'] == 3
    assert m['wsnotify_auth_failures_total{reason="rate_limited"}'] == 1


def test_auth_failure_rate_limit_zero_never_limits(bridges):
    b = bridges(args=["--auth-failure-rate-limit", "0"])
    for _ in range(20):
        assert raw_upgrade(b.port, "/?token=not.a.token")[0] == 401
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 101


def test_close_on_token_expiry_off_keeps_the_connection_open(bridges):
    b = bridges(args=["--token-leeway", "0", "--close-on-token-expiry=false",
                      "--ping-interval", "0"])

    async def go():
        ws = await websockets.connect(b.ws_url(token("alice", exp_in=1)), ping_interval=None)
        await asyncio.sleep(3.5)
        await ws.send('{"action": "nothing"}')
        await asyncio.wait_for(ws.recv(), 5)  # an error frame: still open
        assert ws.close_code is None
        await ws.close()
    run(go())


def test_close_on_token_expiry_is_on_by_default(bridges):
    b = bridges(args=["--token-leeway", "0"])

    async def go():
        ws = await websockets.connect(b.ws_url(token("alice", exp_in=1)), ping_interval=None)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4001
    run(go())


def closed_within(s, seconds):
    """Seconds until the peer closed s (EOF or reset); None if still open after seconds."""
    start = time.time()
    s.settimeout(0.1)
    while time.time() - start < seconds:
        try:
            if s.recv(4096) == b"":
                return time.time() - start
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.time() - start
    return None


def test_slowloris_sending_the_head_byte_by_byte_is_closed_at_handshake_timeout(bridges):
    b = bridges(args=["--handshake-timeout", "1s", "--auth-timeout", "30s"])
    req = (f"GET /?token={token('alice')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nX-Pad: " + "a" * 200).encode()
    s = socket.create_connection(("127.0.0.1", b.port))
    start = time.time()
    closed = False
    for byte in req:
        try:
            s.send(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.05)
        if time.time() - start > 6:
            break
    assert closed or closed_within(s, 3) is not None, "slowloris still connected"
    assert time.time() - start < 6
    s.close()
    assert "head not complete after handshake_timeout" in b.log()


def test_client_that_never_sends_a_head_is_closed_at_handshake_timeout(bridges):
    b = bridges(args=["--handshake-timeout", "1s"])
    with socket.create_connection(("127.0.0.1", b.port)) as s:
        took = closed_within(s, 5)
    assert took is not None and took < 3.5
    assert b.healthz()[0] == 200
