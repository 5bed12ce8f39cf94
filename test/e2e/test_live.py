"""Live interaction without a commit (issue 20): signals across two bridges,
presence with state, and token refresh on an open connection."""
import asyncio
import json
import time

import websockets

from conftest import expect_silence, recv_json, run, token, wait_for

ALLOW = """
CREATE FUNCTION allow(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT to_jsonb(coalesce(message ->> 'topic', '') LIKE 'room:%') $$;
SELECT ws_route('$subscribe', 'allow(jsonb,jsonb)');
"""


def allow_signals(db):
    db.sql("SELECT ws_route('$signal', 'allow(jsonb,jsonb)')")


async def join(b, user, topics="room:1", v1=True, tok=None):
    """A connection of user, subscribed at connect to topics."""
    ws = await websockets.connect(
        b.ws_url(tok or token(user)) + f"&topics={topics}", max_size=None, ping_interval=None,
        subprotocols=["wsnotify.v1"] if v1 else None)
    return ws


async def act(ws, **message):
    await ws.send(json.dumps(message))


async def first(ws, pred, limit=10):
    """The first frame that pred accepts (presence messages may come first)."""
    for _ in range(limit):
        f = await recv_json(ws)
        if pred(f):
            return f
    raise AssertionError("no such frame")


def is_type(kind):
    return lambda f: f.get("type") == kind


def outbox(db):
    return db.sql("SELECT count(*) FROM websocket_message")[0][0]


def test_signal_ws_reaches_subscribers_on_every_bridge_at_once_and_is_never_stored(bridges, db):
    for stmt in ALLOW.split(";\n")[:-1]:
        db.sql(stmt)
    one, two = bridges(), bridges()

    async def go():
        a = await join(one, "alice")
        b = await join(two, "bob", v1=False)
        c = await join(two, "carol", topics="room:2")
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_subscription")[0][0] == 3)
        before = outbox(db)
        with db.connect(autocommit=False) as conn:
            assert conn.execute("SELECT signal_ws('room:1', '{\"typing\": \"dave\"}')"
                                ).fetchone()[0] == 2
            # not through the commit: it arrives while the transaction is open
            assert await recv_json(a) == {"type": "signal", "topic": "room:1",
                                          "data": {"typing": "dave"}}
            assert await recv_json(b) == {"typing": "dave"}
            conn.rollback()
        await expect_silence(c, 0.3)
        db.sql("SELECT wsnotify_order_barrier()")
        assert outbox(db) == before
        assert one.metrics()["wsnotify_signals_out_total"] == 1
        for ws in (a, b, c):
            await ws.close()
    run(go())


def test_client_signal_needs_a_signal_route_and_skips_its_sender(bridges, db):
    for stmt in ALLOW.split(";\n")[:-1]:
        db.sql(stmt)
    one, two = bridges(), bridges()

    async def go():
        a = await join(one, "alice")
        b = await join(two, "bob")
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_subscription")[0][0] == 2)
        await act(a, action="signal", topic="room:1", data={"x": 1}, request_id=1)
        err = await recv_json(a)
        assert err["type"] == "error" and "signals are not allowed" in err["message"]
        allow_signals(db)
        await act(a, action="signal", topic="lobby", data={"x": 2}, request_id=2)
        err = await recv_json(a)
        assert err["type"] == "error" and "refused" in err["message"]
        await act(a, action="signal", topic="room:1", data={"x": 3})
        assert await recv_json(b) == {"type": "signal", "topic": "room:1", "data": {"x": 3}}
        await expect_silence(a, 0.3)
        await act(a, action="signal", topic="room:1", data={"x": 4}, echo=True)
        assert await recv_json(b) == {"type": "signal", "topic": "room:1", "data": {"x": 4}}
        assert await recv_json(a) == {"type": "signal", "topic": "room:1", "data": {"x": 4}}
        await a.close()
        await b.close()
    run(go())


def test_client_signal_limits_size_and_rate(bridges, db):
    for stmt in ALLOW.split(";\n")[:-1]:
        db.sql(stmt)
    allow_signals(db)
    b = bridges(config="signal_rate_limit = 5\nsignal_max_size = 100\n")

    async def go():
        a = await join(b, "alice")
        await act(a, action="signal", topic="room:1", data="x" * 200, request_id=1)
        err = await recv_json(a)
        assert err["type"] == "error" and err["code"] == "too_large"
        codes = []
        for i in range(12):
            await act(a, action="signal", topic="room:1", data=i, request_id=i + 10, echo=True)
        deadline = time.time() + 5
        while len(codes) < 12 and time.time() < deadline:
            f = await recv_json(a)
            codes.append(f.get("code", f["type"]))
        assert codes.count("signal") == 5 and codes.count("rate_limited") == 7, codes
        await a.close()
    run(go())


def test_track_attaches_state_to_presence_and_tells_the_topic(bridges, db):
    for stmt in ALLOW.split(";\n")[:-1]:
        db.sql(stmt)
    db.sql("SELECT ws_topic_presence('room:1')")
    one, two = bridges(), bridges()

    async def go():
        watcher = await join(two, "bob")
        assert (await recv_json(watcher))["data"]["presence"] == "join"
        a = await join(one, "alice")
        assert (await recv_json(watcher))["data"]["presence"] == "join"
        await act(a, action="track", topic="room:1", state={"cursor": [1, 2]}, request_id=1)
        assert await first(a, is_type("reply")) == {"type": "reply", "request_id": 1,
                                                     "data": {"tracked": "room:1"}}
        update = (await recv_json(watcher))["data"]
        assert update == {"presence": "update", "topic": "room:1", "user_id": "alice",
                          "state": {"cursor": [1, 2]}}
        assert dict((u, s) for u, _, s in db.sql("SELECT * FROM ws_presence('room:1')")) == \
            {"alice": {"cursor": [1, 2]}, "bob": None}
        await act(a, action="track", topic="room:1", state={"big": "y" * 5000}, request_id=2)
        err = await first(a, is_type("error"))
        assert err["type"] == "error" and "too large" in err["message"]
        await act(a, action="track", topic="room:9", state={}, request_id=3)
        err = await first(a, is_type("error"))
        assert err["type"] == "error" and "not subscribed" in err["message"]
        await a.close()
        await watcher.close()
    run(go())


def test_refresh_moves_the_expiry_and_a_refused_refresh_keeps_the_old_one(bridges, db):
    b = bridges(config="token_leeway = 0\n")

    async def go():
        keep = await websockets.connect(b.ws_url(token("alice", exp_in=3)), ping_interval=None,
                                        subprotocols=["wsnotify.v1"])
        lose = await websockets.connect(b.ws_url(token("bob", exp_in=3)), ping_interval=None,
                                        subprotocols=["wsnotify.v1"])
        await act(keep, action="refresh", token=token("alice", exp_in=8, role="x"), request_id=1)
        reply = await recv_json(keep)
        assert reply["data"]["refreshed"] is True
        assert db.sql("SELECT claims ->> 'role' FROM websocket_client "
                      "WHERE user_id = 'alice'")[0][0] == "x"
        await act(lose, action="refresh", token=token("mallory", exp_in=60), request_id=2)
        err = await recv_json(lose)
        assert err["type"] == "error" and "another user" in err["message"]
        # bob keeps his old expiry: 4001 at about 3 s; alice is still open then
        try:
            await asyncio.wait_for(lose.recv(), 6)
        except websockets.ConnectionClosed as e:
            assert e.rcvd.code == 4001
        await keep.ping()
        t0 = time.time()
        try:
            await asyncio.wait_for(keep.recv(), 10)
        except websockets.ConnectionClosed as e:
            assert e.rcvd.code == 4001
        assert time.time() - t0 > 2
    run(go(), timeout=40)
