"""Database loss, slow clients, several bridges, reaping, shutdown."""
import asyncio
import os
import signal
import time

import pytest
import websockets

from conftest import connect, expect_silence, recv_json, rows_of, run, token, wait_for


def kill_bridge_sessions(db):
    return db.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE application_name = 'wsnotify-bridge' AND datname = current_database()")[0][0]


def test_database_connection_killed_loses_nothing(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"i\": 0}')")
        assert await recv_json(ws) == {"i": 0}
        assert kill_bridge_sessions(db) == 1
        for i in range(1, 21):
            db.sql("SELECT send_ws('alice', jsonb_build_object('i', %s::int))", i)
        got = [(await recv_json(ws, timeout=10))["i"] for _ in range(20)]
        assert got == list(range(1, 21))
        assert ws.open
        await ws.close()
    run(go())
    assert bridge.metrics()["wsnotify_db_reconnects_total"] >= 1


def test_postgres_restart_keeps_sockets_and_loses_nothing(bridge, db, cluster):
    async def go():
        ws = await connect(bridge, "alice")
        cluster.restart("fast")
        for i in range(10):
            db.sql("SELECT send_ws('alice', jsonb_build_object('i', %s::int))", i)
        got = [(await recv_json(ws, timeout=15))["i"] for _ in range(10)]
        assert got == list(range(10))
        await ws.close()
    run(go(), timeout=40)
    wait_for(lambda: rows_of(db) == [], what="row removed after close")


def test_rows_reaped_during_an_outage_are_restored(bridges, db):
    b = bridges(args=["--reap-after", "1s"])
    other = bridges(args=["--reap-after", "1s"])

    async def go():
        ws = await connect(b, "alice")
        # make b look dead to the other bridge, then let b reconnect
        b.signal(signal.SIGSTOP)
        try:
            wait_for(lambda: rows_of(db, b.bridge_id) == [], timeout=10, what="rows reaped")
        finally:
            b.signal(signal.SIGCONT)
        kill_bridge_sessions(db)
        wait_for(lambda: rows_of(db, b.bridge_id) != [], timeout=10, what="rows restored")
        db.sql("SELECT send_ws('alice', '{\"after\": 1}')")
        assert await recv_json(ws, timeout=10) == {"after": 1}
        await ws.close()
    run(go(), timeout=40)


def test_client_that_does_not_read_is_closed_1008_while_others_receive(bridges, db):
    b = bridges(args=["--send-queue-max", "1MiB"])
    chunk = "z" * (256 * 1024)

    async def go():
        slow = await websockets.connect(b.ws_url(token("alice")), max_size=None,
                                        max_queue=1, read_limit=4096, ping_interval=None)
        fast = await connect(b, "alice")

        def send_all():
            for i in range(40):
                db.sql("SELECT send_ws('alice', jsonb_build_object('i', %s::int, 'pad', %s::text))",
                       i, chunk)
        sender = asyncio.get_running_loop().run_in_executor(None, send_all)
        got = [(await recv_json(fast, timeout=10))["i"] for _ in range(40)]
        await sender
        assert got == list(range(40))
        wait_for(lambda: b.metrics()["wsnotify_queue_drops_total"] == 1, what="queue drop")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(slow.recv(), 10)
        assert slow.close_code == 1008
        assert fast.open
        await fast.close()
    run(go(), timeout=60)


def test_two_bridges_each_deliver_to_their_own_sockets(bridges, db):
    b1 = bridges()
    b2 = bridges()

    async def go():
        a1 = await connect(b1, "alice")
        a2 = await connect(b2, "alice")
        bob = await connect(b2, "bob")
        assert db.sql("SELECT send_ws('alice', '{\"x\": 1}')")[0][0] == 2
        assert await recv_json(a1) == {"x": 1}
        assert await recv_json(a2) == {"x": 1}
        db.sql("SELECT send_ws('bob', '{\"y\": 1}')")
        assert await recv_json(bob) == {"y": 1}
        for ws in (a1, a2, bob):
            await ws.close()
        await asyncio.sleep(0.3)
    run(go())
    m1, m2 = b1.metrics(), b2.metrics()
    assert m1["wsnotify_messages_out_total"] == 1
    assert m2["wsnotify_messages_out_total"] == 2


def test_sigkilled_bridge_rows_are_reaped_by_a_live_bridge(bridges, db):
    dead = bridges(args=["--reap-after", "1s"])
    live = bridges(args=["--reap-after", "1s"])

    async def go():
        ws = await connect(dead, "alice")
        assert len(rows_of(db, dead.bridge_id)) == 1
        dead.signal(signal.SIGKILL)
        dead.wait()
        wait_for(lambda: rows_of(db, dead.bridge_id) == [], timeout=10, what="rows reaped")
    run(go(), timeout=30)
    assert live.proc.poll() is None


def test_restarted_bridge_with_same_id_reaps_its_previous_rows(bridges, db):
    first = bridges(bridge_id="same-id")

    async def go():
        ws = await connect(first, "alice")
        first.signal(signal.SIGKILL)
        first.wait()
    run(go())
    assert len(rows_of(db, "same-id")) == 1
    bridges(bridge_id="same-id")
    assert rows_of(db, "same-id") == []


def test_sigterm_closes_with_1001_removes_rows_and_exits_0(bridge, db):
    async def go():
        socks = [await connect(bridge, u) for u in ("alice", "bob")]
        assert len(rows_of(db)) == 2
        bridge.signal(signal.SIGTERM)
        for ws in socks:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
    run(go())
    assert bridge.wait() == 0
    assert rows_of(db) == []


def test_peer_that_does_not_answer_pings_is_closed(bridges, db):
    b = bridges(args=["--ping-interval", "300ms", "--ping-timeout", "300ms"])

    async def go():
        ws = await connect(b, "alice")
        # stop reading the socket: pongs are never sent
        ws.transport.pause_reading()
        wait_for(lambda: b.metrics()["wsnotify_ping_timeouts_total"] == 1, timeout=10,
                 what="ping timeout")
        ws.transport.abort()
    run(go())
    wait_for(lambda: rows_of(db) == [], what="row removed")


def test_idle_connection_is_closed_after_idle_timeout(bridges):
    b = bridges(args=["--idle-timeout", "1s", "--ping-interval", "0"])

    async def go():
        ws = await connect(b, "alice")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1000
    run(go())


def test_connection_is_closed_with_4001_when_its_token_expires(bridges):
    b = bridges(args=["--token-leeway", "0"])

    async def go():
        ws = await websockets.connect(b.ws_url(token("alice", exp_in=2)), ping_interval=None)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4001
    run(go())


def test_killing_the_database_session_mid_stream_loses_and_duplicates_nothing(bridge, db):
    import threading
    total = 2000

    def send_all():
        with db.connect() as conn:
            for i in range(total):
                conn.execute("SELECT send_ws('alice', jsonb_build_object('i', %s::int))", (i,))
                if i in (500, 1200):
                    kill_bridge_sessions(db)

    async def go():
        ws = await connect(bridge, "alice")
        t = threading.Thread(target=send_all)
        t.start()
        got = []
        while len(got) < total:
            got.append((await recv_json(ws, timeout=15))["i"])
        t.join()
        await expect_silence(ws, 0.5)
        assert got == list(range(total))
        await ws.close()
    run(go(), timeout=90)
    assert bridge.metrics()["wsnotify_db_reconnects_total"] >= 1
