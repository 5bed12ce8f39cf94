"""Binary messages end to end: send_ws_binary and its forms become binary
frames (wsnotify.v1: the binary envelope 0x01 + 8-byte big-endian id +
bytes), and a client's binary frames reach the $binary route as bytea."""
import asyncio
import hashlib
import json
import struct

import pytest
import websockets

from conftest import connect, recv_json, run, wait_for
from test_resume import connect_v1, last_id

ALL_BYTES = bytes(range(256))
ONE_MB = bytes((i * 7 + 3) % 256 for i in range(1_000_000))


async def recv_bytes(ws, timeout=10):
    """The next frame, which must be binary."""
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, bytes), f"expected a binary frame, got {msg[:100]!r}"
    return msg


def envelope(frame):
    """(cursor, payload) of a wsnotify.v1 binary envelope."""
    assert frame[0] == 0x01, frame[:9]
    return str(struct.unpack(">Q", frame[1:9])[0]), frame[9:]


def connection_id(db, user):
    return db.sql("SELECT connection_id FROM websocket_client WHERE user_id = %s", user)[0][0]


def test_all_256_byte_values_reach_a_plain_client_as_one_binary_frame(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        db.sql("SELECT send_ws_binary('alice', %s)", ALL_BYTES)
        assert await recv_bytes(ws) == ALL_BYTES
        await ws.close()
    run(go())


def test_one_megabyte_reaches_plain_and_v1_clients_whole(bridge, db):
    async def go():
        plain = await connect(bridge, "alice")
        v1 = await connect_v1(bridge, "alice")
        db.sql("SELECT send_ws_binary('alice', %s)", ONE_MB)
        assert await recv_bytes(plain, 20) == ONE_MB
        cursor, payload = envelope(await recv_bytes(v1, 20))
        assert payload == ONE_MB
        assert cursor == str(last_id(db))
        await plain.close()
        await v1.close()
    run(go())


def test_v1_binary_envelope_carries_the_cursor_between_text_messages(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice")
        with db.connect(autocommit=False) as conn:
            conn.execute("SELECT send_ws('alice', '{\"n\": 1}')")
            conn.execute("SELECT send_ws_binary('alice', %s)", (ALL_BYTES,))
            conn.execute("SELECT send_ws('alice', '{\"n\": 3}')")
            conn.commit()
        first = await recv_json(ws)
        cursor, payload = envelope(await recv_bytes(ws))
        third = await recv_json(ws)
        assert first["data"] == {"n": 1} and third["data"] == {"n": 3}
        assert payload == ALL_BYTES
        assert int(first["id"]) < int(cursor) < int(third["id"])
        await ws.close()
    run(go())


def test_resume_replays_binary_messages_with_their_cursor(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"before\": true}')")
        seen = (await recv_json(ws))["id"]
        await ws.close()
        db.sql("SELECT send_ws_binary('alice', %s)", ALL_BYTES)
        db.sql("SELECT send_ws_binary('alice', %s)", ONE_MB)
        ws = await connect_v1(bridge, "alice", since=seen)
        c1, p1 = envelope(await recv_bytes(ws))
        c2, p2 = envelope(await recv_bytes(ws, 20))
        assert (p1, p2) == (ALL_BYTES, ONE_MB)
        assert int(seen) < int(c1) < int(c2)
        await ws.close()
    run(go())


def test_connection_broadcast_and_topic_forms_send_binary_frames(bridge, db):
    async def go():
        alice = await connect(bridge, "alice")
        bob = await connect(bridge, "bob")
        db.sql("SELECT ws_subscribe(%s, 'room:1')", connection_id(db, "bob"))
        db.sql("SELECT send_ws_connection_binary(%s, '\\x01'::bytea)", connection_id(db, "alice"))
        assert await recv_bytes(alice) == b"\x01"
        db.sql("SELECT broadcast_ws_binary('\\x02'::bytea)")
        assert await recv_bytes(alice) == b"\x02"
        assert await recv_bytes(bob) == b"\x02"
        db.sql("SELECT publish_ws_binary('room:1', '\\x0300'::bytea)")
        assert await recv_bytes(bob) == b"\x03\x00"
        db.sql("SELECT send_ws_binary('alice', ''::bytea)")
        assert await recv_bytes(alice) == b""
        await alice.close()
        await bob.close()
    run(go())


def binary_route(db):
    db.sql("""CREATE FUNCTION on_bytes(c jsonb, m bytea) RETURNS jsonb LANGUAGE sql AS $$
              SELECT jsonb_build_object('user', c->>'user_id', 'length', length(m),
                                        'sha256', encode(sha256(m), 'hex')) $$""")
    db.sql("SELECT ws_route('$binary', 'on_bytes(jsonb,bytea)')")


@pytest.mark.parametrize("payload", [ALL_BYTES, ONE_MB], ids=["256_values", "1MB"])
def test_client_binary_frame_reaches_the_binary_route_as_bytea(bridge, db, payload):
    binary_route(db)

    async def go():
        ws = await connect(bridge, "alice")
        await ws.send(payload)
        reply = await recv_json(ws, 20)
        assert reply == {"user": "alice", "length": len(payload),
                         "sha256": hashlib.sha256(payload).hexdigest()}
        # the connection stays open and text messages still route
        db.sql("SELECT send_ws('alice', '{\"still\": \"open\"}')")
        assert await recv_json(ws) == {"still": "open"}
        await ws.close()
    run(go())


def test_v1_client_gets_the_binary_handler_reply_in_the_reply_envelope(bridge, db):
    binary_route(db)

    async def go():
        ws = await connect_v1(bridge, "alice")
        await ws.send(ALL_BYTES)
        reply = await recv_json(ws)
        assert reply["type"] == "reply" and reply["data"]["length"] == 256
        await ws.close()
    run(go())


def test_binary_frame_without_binary_route_still_closes_with_1003(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        await ws.send(ALL_BYTES)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1003
    run(go())
    wait_for(lambda: not db.sql("SELECT 1 FROM websocket_client"), what="row removed")
