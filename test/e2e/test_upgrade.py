"""The upgrade: authorization through the database, refusal codes, the row."""
import time

import pytest
import websockets

from conftest import (connect, raw_upgrade, recv_json, rows_of, run, token, wait_for, SECRET)
import jwt


def test_missing_token_is_refused_with_401(bridge):
    status, body = raw_upgrade(bridge.port, "/")
    assert status == 401
    assert "missing token" in body


def test_bad_signature_is_refused_with_401_and_reason(bridge):
    bad = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "wrong-secret", algorithm="HS256")
    status, body = raw_upgrade(bridge.port, f"/?token={bad}")
    assert status == 401
    assert body.strip() and bad not in body


def test_expired_token_is_refused_with_401(bridge):
    status, _ = raw_upgrade(bridge.port, f"/?token={token('alice', exp_in=-3600)}")
    assert status == 401


def test_bearer_header_is_accepted(bridge, db):
    status, _ = raw_upgrade(bridge.port, "/", [f"Authorization: Bearer {token('bob')}"])
    assert status == 101
    wait_for(lambda: rows_of(db) == [] , what="row removed after the socket closed")


def test_error_raised_on_purpose_is_refused_with_403(bridge, db):
    db.sql("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
              $$BEGIN RAISE EXCEPTION 'user % is banned', NEW.user_id; END$$""")
    db.sql("""CREATE TRIGGER refuse BEFORE INSERT ON websocket_client
              FOR EACH ROW EXECUTE FUNCTION refuse()""")
    status, body = raw_upgrade(bridge.port, f"/?token={token('mallory')}")
    assert status == 403
    assert "user mallory is banned" in body


def test_database_unreachable_is_refused_with_503(bridges, db):
    b = bridges(args=["--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=1"], start=False)
    b.start(wait=False)
    wait_for(lambda: b.healthz()[0] == 503, what="bridge answering 503")
    status, body = raw_upgrade(b.port, f"/?token={token('alice')}")
    assert status == 503
    assert "database" in body


def test_max_connections_is_refused_with_503(bridges):
    b = bridges(args=["--max-connections", "1"])

    async def go():
        ws = await connect(b, "alice")
        status, body = raw_upgrade(b.port, f"/?token={token('bob')}")
        await ws.close()
        return status, body
    status, body = run(go())
    assert status == 503
    assert "capacity" in body


def test_origin_not_allowed_is_refused_with_403(bridges):
    b = bridges(args=["--allowed-origins", "https://app.example"])
    status, _ = raw_upgrade(b.port, f"/?token={token('alice')}", ["Origin: https://evil.example"])
    assert status == 403
    status, _ = raw_upgrade(b.port, f"/?token={token('alice')}", ["Origin: https://app.example"])
    assert status == 101


def test_row_lives_exactly_as_long_as_the_socket(bridge, db):
    async def go():
        ws = await websockets.connect(bridge.ws_url(token("carol", role="x")),
                                      extra_headers={"User-Agent": "e2e-agent"})
        rows = db.sql("SELECT user_id, bridge_id, remote_addr, user_agent, claims->>'role' "
                      "FROM websocket_client")
        assert rows == [("carol", bridge.bridge_id, "127.0.0.1", "e2e-agent", "x")]
        await ws.close()
    run(go())
    wait_for(lambda: rows_of(db) == [], what="row removed")


def test_waiting_upgrade_does_not_block_other_sockets(bridge, db):
    db.sql("""CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
              $$BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END$$""")
    db.sql("""CREATE TRIGGER slow BEFORE INSERT ON websocket_client
              FOR EACH ROW EXECUTE FUNCTION slow()""")
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(
        s=raw_upgrade(bridge.port, f"/?token={token('slowpoke')}")))
    t.start()
    wait_for(lambda: bridge.metrics().get("wsnotify_upgrades_pending") == 1, what="upgrade pending")
    t0 = time.time()
    assert bridge.healthz()[0] == 200
    assert time.time() - t0 < 0.5
    t.join()
    assert result["s"][0] == 101


def test_connect_handler_result_is_the_first_frame(bridge, db):
    db.sql("""CREATE FUNCTION hello(c jsonb, m jsonb) RETURNS jsonb LANGUAGE sql AS
              $$SELECT jsonb_build_object('welcome', c->>'user_id')$$""")
    db.sql("SELECT ws_route('$connect', 'hello(jsonb,jsonb)')")

    async def go():
        ws = await connect(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"n\": 1}')")
        assert await recv_json(ws) == {"welcome": "alice"}
        assert await recv_json(ws) == {"n": 1}
        await ws.close()
    run(go())


def test_connect_handler_refusal_is_403_with_its_message(bridge, db):
    db.sql("""CREATE FUNCTION gatekeeper(c jsonb, m jsonb) RETURNS jsonb LANGUAGE plpgsql AS
              $$BEGIN RAISE EXCEPTION 'no entry for %', c->>'user_id'; END$$""")
    db.sql("SELECT ws_route('$connect', 'gatekeeper(jsonb,jsonb)')")
    status, body = raw_upgrade(bridge.port, f"/?token={token('mallory')}")
    assert status == 403
    assert "no entry for mallory" in body
    assert rows_of(db) == []
