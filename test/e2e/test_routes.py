"""Client messages run SQL route handlers; replies, errors, limits."""
import asyncio
import json
import re
import time

import pytest
import websockets

from conftest import connect, expect_silence, recv_json, run, token, wait_for
from test_resume import connect_v1


def route(db, name, body, lang="sql"):
    fn = "h_" + name.strip("$").replace("-", "_")
    db.sql(f"CREATE FUNCTION {fn}(c jsonb, m jsonb) RETURNS jsonb LANGUAGE {lang} AS $f${body}$f$")
    db.sql("SELECT ws_route(%s, %s::regprocedure)", name, f"{fn}(jsonb,jsonb)")


def test_action_runs_its_handler_and_the_result_comes_back(bridge, db):
    route(db, "echo", "SELECT jsonb_build_object('you', c->>'user_id', 'said', m->'text')")

    async def go():
        ws = await connect(bridge, "alice")
        await ws.send(json.dumps({"action": "echo", "text": "hi"}))
        assert await recv_json(ws) == {"you": "alice", "said": "hi"}
        await ws.close()
    run(go())


def test_v1_reply_carries_the_request_id_and_replies_keep_request_order(bridge, db):
    route(db, "echo", "SELECT m->'n'")

    async def go():
        ws = await connect_v1(bridge, "alice")
        for n in range(10):
            await ws.send(json.dumps({"action": "echo", "n": n, "request_id": f"r{n}"}))
        got = [await recv_json(ws) for _ in range(10)]
        assert got == [{"type": "reply", "request_id": f"r{n}", "data": n} for n in range(10)]
        await ws.close()
    run(go())


def test_default_route_takes_messages_without_a_route(bridge, db):
    route(db, "$default", "SELECT jsonb_build_object('default', m)")

    async def go():
        ws = await connect(bridge, "alice")
        await ws.send('{"action": "nope"}')
        assert await recv_json(ws) == {"default": {"action": "nope"}}
        await ws.close()
    run(go())


def test_error_frames_leave_the_connection_open(bridge, db):
    route(db, "boom", "BEGIN RAISE EXCEPTION 'on purpose'; END", lang="plpgsql")
    route(db, "crash", "SELECT (1/0)::text::jsonb")

    async def go():
        ws = await connect_v1(bridge, "alice")
        await ws.send("not json")
        assert (await recv_json(ws))["code"] == "bad_json"
        await ws.send('{"action": "missing", "request_id": 7}')
        e = await recv_json(ws)
        assert (e["code"], e["request_id"]) == ("no_route", 7)
        await ws.send('{"action": "boom"}')
        e = await recv_json(ws)
        assert (e["code"], e["message"]) == ("handler_error", "on purpose")
        await ws.send('{"action": "crash"}')
        e = await recv_json(ws)
        assert e["code"] == "handler_error" and "division" not in e["message"]
        assert e["message"].startswith("internal error (ref ")
        assert ws.open
        await ws.close()
    run(go())
    assert "division by zero" in bridge.log()


def test_handler_past_handler_timeout_gets_a_timeout_error(bridges, db):
    b = bridges(args=["--handler-timeout", "200ms"])
    route(db, "slow", "SELECT pg_sleep(2)::text::jsonb")

    async def go():
        ws = await connect_v1(b, "alice")
        await ws.send('{"action": "slow"}')
        assert (await recv_json(ws))["code"] == "timeout"
        await ws.close()
    run(go())


def test_slow_handler_delays_neither_deliveries_nor_other_clients(bridge, db):
    route(db, "slow", "SELECT to_jsonb('slow'::text) FROM pg_sleep(2)")
    route(db, "fast", "SELECT to_jsonb('fast'::text)")

    async def go():
        a = await connect(bridge, "alice")
        b = await connect(bridge, "bob")
        await a.send('{"action": "slow"}')
        await asyncio.sleep(0.1)
        t0 = time.time()
        await b.send('{"action": "fast"}')
        assert await recv_json(b) == "fast"
        db.sql("SELECT send_ws('bob', '{\"d\": 1}')")
        assert await recv_json(b) == {"d": 1}
        assert time.time() - t0 < 1.0
        assert await recv_json(a, timeout=5) == "slow"
        await a.close()
        await b.close()
    run(go())


def test_client_over_its_rate_limit_gets_rate_limited_errors(bridges, db):
    b = bridges(args=["--client-rate-limit", "5"])
    route(db, "echo", "SELECT m->'n'")

    async def go():
        ws = await connect_v1(b, "alice")
        for n in range(20):
            await ws.send(json.dumps({"action": "echo", "n": n}))
        frames = [await recv_json(ws) for _ in range(20)]
        assert sum(1 for f in frames if f.get("code") == "rate_limited") >= 10
        assert sum(1 for f in frames if f.get("type") == "reply") >= 5
        await ws.close()
    run(go())


def test_binary_frame_closes_with_1003(bridge):
    async def go():
        ws = await connect(bridge, "alice")
        await ws.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1003
    run(go())


def test_hostile_bodies_reach_the_handler_as_data(bridge, db):
    route(db, "echo", "SELECT m->'v'")
    hostile = ["'); DROP TABLE websocket_client; --", "\u00e9\u4e2d\U0001F600", "\\u0000 not a nul",
               "x" * 100000]

    async def go():
        ws = await connect(bridge, "alice")
        for v in hostile:
            await ws.send(json.dumps({"action": "echo", "v": v}))
            assert await recv_json(ws) == v
        deep = {"action": "echo", "v": 1}
        for _ in range(500):
            deep = {"action": "echo", "v": deep}
        await ws.send(json.dumps(deep))
        await recv_json(ws)
        assert ws.open
        await ws.close()
    run(go())
    assert db.sql("SELECT count(*) FROM websocket_client") is not None


def test_disconnect_handler_runs_when_the_client_closes(bridge, db):
    db.sql("CREATE TABLE gone (user_id text)")
    route(db, "$disconnect",
          "BEGIN INSERT INTO gone VALUES (c->>'user_id'); RETURN NULL; END", lang="plpgsql")

    async def go():
        ws = await connect(bridge, "alice")
        await ws.close()
    run(go())
    from conftest import wait_for
    wait_for(lambda: db.sql("SELECT user_id FROM gone") == [("alice",)], what="$disconnect ran")


def test_disconnect_handler_runs_after_close_ws(bridge, db):
    db.sql("CREATE TABLE gone (connection_id text, still_there boolean)")
    route(db, "$disconnect",
          "BEGIN INSERT INTO gone SELECT c->>'connection_id', EXISTS (SELECT 1 FROM "
          "websocket_client WHERE connection_id = c->>'connection_id'); RETURN NULL; END",
          lang="plpgsql")

    async def go():
        ws = await connect(bridge, "alice")
        wait_for(lambda: len(db.sql("SELECT 1 FROM websocket_client")) == 1)
        conn_id = db.sql("SELECT connection_id FROM websocket_client")[0][0]
        db.sql("SELECT close_ws(%s, 4000, 'bye')", conn_id)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4000
        wait_for(lambda: db.sql("SELECT * FROM gone") == [(conn_id, False)],
                 what="$disconnect ran after the row was gone")
    run(go())


def test_disconnect_handler_runs_for_sockets_of_a_bridge_shutting_down(bridges, db):
    import signal
    db.sql("CREATE TABLE gone (user_id text)")
    route(db, "$disconnect",
          "BEGIN INSERT INTO gone VALUES (c->>'user_id'); RETURN NULL; END", lang="plpgsql")
    b = bridges()

    async def go():
        sockets = [await connect(b, user) for user in ("alice", "bob")]
        wait_for(lambda: len(db.sql("SELECT 1 FROM websocket_client")) == 2)
        b.signal(signal.SIGTERM)
        assert b.wait() == 0
        for ws in sockets:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
    run(go())
    assert sorted(db.sql("SELECT user_id FROM gone")) == [("alice",), ("bob",)]


def test_route_changes_are_seen_by_a_running_bridge(bridge, db):
    route(db, "version", "SELECT '1'::jsonb")

    async def go():
        ws = await connect(bridge, "alice")
        await ws.send('{"action": "version"}')
        assert await recv_json(ws) == 1
        db.sql("CREATE FUNCTION v2(c jsonb, m jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''2''::jsonb'")
        db.sql("SELECT ws_route('version', 'v2(jsonb,jsonb)')")
        await ws.send('{"action": "version"}')
        assert await recv_json(ws) == 2
        db.sql("SELECT ws_unroute('version')")
        await ws.send('{"action": "version"}')
        reply = await recv_json(ws)
        assert reply["error"] == "no_route"
        await ws.close()
    run(go())


def test_rls_handler_of_user_a_cannot_read_user_b_rows(bridge, db):
    db.sql("CREATE ROLE rls_handler")
    try:
        db.sql("CREATE TABLE notes (owner text, body text)")
        db.sql("INSERT INTO notes VALUES ('alice', 'a secret'), ('bob', 'b secret')")
        db.sql("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
        db.sql("CREATE POLICY own ON notes USING (owner = current_setting('wsnotify.user_id'))")
        db.sql("GRANT SELECT ON notes TO rls_handler")
        db.sql("CREATE FUNCTION notes_of(c jsonb, m jsonb) RETURNS jsonb LANGUAGE sql AS "
               "'SELECT coalesce(jsonb_agg(body), ''[]'') FROM notes'")
        db.sql("GRANT EXECUTE ON FUNCTION notes_of(jsonb, jsonb) TO rls_handler")
        db.sql("SELECT ws_route('notes', 'notes_of(jsonb,jsonb)', 'rls_handler')")

        async def go():
            alice = await connect(bridge, "alice")
            await alice.send('{"action": "notes"}')
            assert await recv_json(alice) == ["a secret"]
            await alice.send('{"action": "notes", "user_id": "bob"}')
            assert await recv_json(alice) == ["a secret"]
            await alice.close()
        run(go())
    finally:
        db.sql("DROP OWNED BY rls_handler")
        db.sql("DROP ROLE rls_handler")


def test_invalid_utf8_text_frame_closes_with_1007(bridge):
    import socket
    import base64
    import os
    from conftest import token as mint
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /?token={mint('alice')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        payload, mask = b"\xff\xfe\xfd", os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        data = b""
        s.settimeout(3)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        assert data[0] & 0x0F == 0x8, "expected a close frame"
        assert int.from_bytes(data[2:4], "big") == 1007


def handler_backends(db):
    """The pids of the handler pool's backends on db."""
    return [r[0] for r in db.sql("SELECT pid FROM pg_stat_activity WHERE application_name = "
                                 "'wsnotify-bridge-handlers' AND datname = current_database()")]


def test_handler_timeout_still_applies_after_a_handler_session_reconnects(bridges, db):
    """route.c kept the statement_timeout it had set on a session that came back without it."""
    b = bridges(args=["--handler-timeout", "200ms", "--handler-pool-size", "1"])
    route(db, "slow", "SELECT pg_sleep(2)::text::jsonb")

    async def go():
        ws = await connect_v1(b, "alice")
        await ws.send('{"action": "slow"}')
        assert (await recv_json(ws))["code"] == "timeout"
        assert db.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE application_name = 'wsnotify-bridge-handlers' "
                      "AND datname = current_database()")[0][0] == 1
        wait_for(lambda: re.search(r"handler pool 1 connected \(.*\), reconnected", b.log()),
                 what="the handler session back")
        await ws.send('{"action": "slow"}')
        got = await recv_json(ws, timeout=5)
        assert got["code"] == "timeout", got
        await ws.close()
    run(go())


def test_the_watchdog_covers_every_session_of_a_64_session_pool(bridges, db):
    """db_all[64] left the 65th session (64 handlers + delivery) out of the watchdog."""
    import os
    import signal
    b = bridges(args=["--handler-pool-size", "64", "--handler-timeout", "500ms",
                      "--auth-timeout", "1s"])
    route(db, "echo", "SELECT m")
    wait_for(lambda: len(handler_backends(db)) == 64, what="64 handler sessions")
    stopped = handler_backends(db)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        async def go():
            socks = [await connect(b, f"u{i}") for i in range(64)]
            for ws in socks:    # the fewest queries first: one to each session
                await ws.send('{"action": "echo"}')
            wait_for(lambda: b.log().count("connection lost: query unanswered") == 64, timeout=30,
                     what="the watchdog dropping all 64 stuck sessions")
            assert "handler pool 64 connection lost: query unanswered" in b.log()
            for ws in socks:
                await ws.close()
        run(go())
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
