"""The wsnotify.v1 subprotocol: envelopes with a cursor, ?since= resume, reset."""
import asyncio
import json

import pytest
import websockets

from conftest import connect, expect_silence, raw_upgrade, recv_json, run, token


async def connect_v1(b, user, since=None, extra=""):
    url = b.ws_url(token(user)) + (f"&since={since}" if since is not None else "") + extra
    return await websockets.connect(url, subprotocols=["wsnotify.v1"], max_size=None,
                                    ping_interval=None)


def last_id(db):
    return db.sql("SELECT max(id) FROM websocket_message")[0][0]


def test_v1_frames_carry_the_cursor_and_the_message(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice")
        assert ws.subprotocol == "wsnotify.v1"
        db.sql("SELECT send_ws('alice', '{\"n\": 1}')")
        frame = await recv_json(ws)
        assert frame == {"id": str(last_id(db)), "data": {"n": 1}}
        await ws.close()
    run(go())


def test_v1_resume_delivers_what_was_missed_once_then_live(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"n\": 1}')")
        cursor = (await recv_json(ws))["id"]
        await ws.close()
        await asyncio.sleep(0.2)
        db.sql("SELECT send_ws('alice', '{\"n\": 2}')")
        db.sql("SELECT broadcast_ws('{\"n\": 3}')")
        db.sql("SELECT send_ws('bob', '{\"n\": 99}')")
        ws = await connect_v1(bridge, "alice", since=cursor)
        db.sql("SELECT send_ws('alice', '{\"n\": 4}')")
        got = [(await recv_json(ws))["data"]["n"] for _ in range(3)]
        assert got == [2, 3, 4]
        await expect_silence(ws, 0.3)
        await ws.close()
    run(go())


def test_v1_unknown_cursor_gets_a_reset_then_live_messages(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice", since="123456789")
        frame = await recv_json(ws)
        assert frame["type"] == "reset" and "id" in frame
        db.sql("SELECT send_ws('alice', '{\"n\": 5}')")
        assert (await recv_json(ws))["data"] == {"n": 5}
        await ws.close()
    run(go())


def test_plain_clients_still_get_bare_messages(bridge, db):
    async def go():
        plain = await connect(bridge, "alice")
        v1 = await connect_v1(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"n\": 6}')")
        assert await recv_json(plain) == {"n": 6}
        assert (await recv_json(v1))["data"] == {"n": 6}
        await plain.close()
        await v1.close()
    run(go())


def test_unsupported_subprotocol_is_refused_with_400(bridge):
    status, body = raw_upgrade(bridge.port, f"/?token={token('alice')}",
                               ["Sec-WebSocket-Protocol: chat"])
    assert status == 400
    assert "subprotocol" in body


def test_v1_resume_after_out_of_order_commits_gets_the_late_one(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice")
        t1 = db.connect(autocommit=False)
        t1.execute("SELECT send_ws('alice', '{\"t\": 1}')")
        db.sql("SELECT send_ws('alice', '{\"t\": 2}')")
        frame = await recv_json(ws)
        assert frame["data"] == {"t": 2}
        await ws.close()
        await asyncio.sleep(0.2)
        t1.commit()
        t1.close()
        ws = await connect_v1(bridge, "alice", since=frame["id"])
        assert (await recv_json(ws))["data"] == {"t": 1}
        await expect_silence(ws, 0.3)
        await ws.close()
    run(go())
