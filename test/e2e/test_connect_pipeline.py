"""Upgrades pipelined on the delivery session (db_pipeline_depth): every
upgrade still gets its own database verdict, deliveries keep their order, and
losing the session in the middle of a burst answers 503 and recovers."""
import asyncio
import threading
import time

import jwt

from conftest import connect, recv_json, rows_of, run, token, wait_for


def bad_token(user):
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600}, "wrong-secret",
                      algorithm="HS256")


async def upgrade(port, tok):
    """One upgrade by hand: (status, writer); the writer keeps a 101 open.

    From 127.0.0.2: these sockets are closed by the client, and their
    TIME_WAIT must not hold a 127.0.0.1 port that a later test binds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=("127.0.0.2", 0))
    writer.write((f"GET /?token={tok} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head.split()[1]), writer


def slow_gatekeeper(db, seconds):
    """A $connect handler that takes `seconds` and refuses users named deny-*."""
    db.sql(f"""CREATE FUNCTION gatekeeper(c jsonb, m jsonb) RETURNS jsonb LANGUAGE plpgsql AS
               $$BEGIN
                   PERFORM pg_sleep({seconds});
                   IF c->>'user_id' LIKE 'deny-%' THEN
                       RAISE EXCEPTION 'no entry for %', c->>'user_id';
                   END IF;
                   RETURN NULL;
               END$$""")
    db.sql("SELECT ws_route('$connect', 'gatekeeper(jsonb,jsonb)')")


def test_pipelined_burst_answers_each_upgrade_by_its_own_verdict(bridges, db):
    b = bridges(args=["--db-pipeline-depth", "32", "--max-connections-per-user", "0",
                      "--auth-failure-rate-limit", "0"])
    slow_gatekeeper(db, 0.003)
    kinds = ["ok", "bad", "deny"] * 80
    in_flight = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            in_flight.append(b.metrics().get("wsnotify_db_in_flight", 0))
            time.sleep(0.02)

    async def go():
        alice = await connect(b, "alice")
        toks = [token(f"ok-{i}") if k == "ok" else bad_token(f"bad-{i}") if k == "bad"
                else token(f"deny-{i}") for i, k in enumerate(kinds)]
        burst = asyncio.gather(*(upgrade(b.port, t) for t in toks))

        async def send():
            # deliveries pipelined among the upgrades, one transaction each
            for i in range(30):
                await asyncio.to_thread(db.sql, "SELECT send_ws('alice', jsonb_build_object('i', %s::int))", i)
        results, _ = await asyncio.gather(burst, send())
        got = [(await recv_json(alice, timeout=10))["i"] for _ in range(30)]
        assert got == list(range(30))
        expected = {"ok": 101, "bad": 401, "deny": 403}
        assert [s for s, _ in results] == [expected[k] for k in kinds]
        assert len(rows_of(db)) == 1 + kinds.count("ok")
        for _, w in results:
            w.close()
        await alice.close()

    t = threading.Thread(target=sample)
    t.start()
    try:
        run(go(), timeout=60)
    finally:
        stop.set()
        t.join()
    # more than one upgrade was in flight on the session at a time
    assert max(in_flight) > 1, in_flight
    wait_for(lambda: rows_of(db) == [], what="rows removed after the sockets closed")


def test_session_lost_during_a_pipelined_burst_answers_503_and_recovers(bridges, db):
    b = bridges(args=["--db-pipeline-depth", "64", "--max-connections-per-user", "0"])
    slow_gatekeeper(db, 0.01)

    async def go():
        burst = asyncio.gather(*(upgrade(b.port, token(f"u{i}")) for i in range(200)))
        await asyncio.sleep(0.4)
        killed = await asyncio.to_thread(
            db.sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'wsnotify-bridge' AND datname = current_database()")
        assert killed[0][0] == 1
        results = await burst
        statuses = [s for s, _ in results]
        assert set(statuses) <= {101, 503}, statuses
        assert 503 in statuses and 101 in statuses
        # back: a new upgrade is accepted, and the rows are exactly the open sockets
        await asyncio.to_thread(wait_for, lambda: b.healthz()[0] == 200, 10)
        status, w = await upgrade(b.port, token("after"))
        assert status == 101
        opened = statuses.count(101) + 1
        await asyncio.to_thread(wait_for, lambda: len(rows_of(db)) == opened, 10,
                                0.05, f"{opened} rows")
        for s, wr in results:
            wr.close()
        w.close()
    run(go(), timeout=60)
    wait_for(lambda: rows_of(db) == [], what="rows removed after the sockets closed")
    assert b.metrics()["wsnotify_db_reconnects_total"] >= 1


def test_connect_synchronous_commit_on_still_connects(bridges, db):
    b = bridges(args=["--connect-synchronous-commit=true"])

    async def go():
        ws = await connect(b, "alice")
        db.sql("SELECT send_ws('alice', '{\"n\": 1}')")
        assert await recv_json(ws) == {"n": 1}
        await ws.close()
    run(go())
