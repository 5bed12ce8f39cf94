"""Any one message the database accepts reaches a client that reads
(issue 17 item 1): send_queue_max bounds the backlog ahead of a message, not
the message, so a message near wsnotify.max_message_size (8 MiB, the same as
send_queue_max's default) no longer closes every reader with 1008."""
import websockets

from conftest import recv_json, run, token

BIG = 8 * 1024 * 1024 - 100


def test_a_message_near_the_database_limit_reaches_readers_and_a_resume(bridge, db):
    async def go():
        v1 = await websockets.connect(bridge.ws_url(token("alice")), max_size=None,
                                      ping_interval=None, subprotocols=["wsnotify.v1"])
        plain = await websockets.connect(bridge.ws_url(token("alice")), max_size=None,
                                         ping_interval=None)
        db.sql("SELECT send_ws('alice', '{\"n\": 0}')")
        first = await recv_json(v1)
        await recv_json(plain)
        # binary near the limit: the v1 envelope's 9 bytes push it past 8 MiB
        db.sql("SELECT send_ws_binary('alice', decode(repeat('ab', %s), 'hex'))", BIG)
        frame = await v1.recv()
        assert isinstance(frame, bytes) and len(frame) == 9 + BIG and frame[0] == 1
        assert len(await plain.recv()) == BIG
        # 1.5 MB of jsonb whose JSON text is 9 MB: each control character is \\u00XX
        db.sql("SELECT broadcast_ws(jsonb_build_object('c', repeat(chr(1), 1500000)))")
        assert len((await recv_json(v1, timeout=20))["data"]["c"]) == 1500000
        assert len((await recv_json(plain, timeout=20))["c"]) == 1500000
        db.sql("SELECT send_ws('alice', '{\"n\": 1}')")
        assert (await recv_json(v1))["data"] == {"n": 1}
        assert await recv_json(plain) == {"n": 1}
        # a v1 client resuming from before them gets them again, not a 1008
        again = await websockets.connect(bridge.ws_url(token("alice")) + f"&since={first['id']}",
                                         max_size=None, ping_interval=None,
                                         subprotocols=["wsnotify.v1"])
        assert len(await again.recv()) == 9 + BIG
        assert len((await recv_json(again, timeout=20))["data"]["c"]) == 1500000
        assert (await recv_json(again))["data"] == {"n": 1}
        assert bridge.metrics()["wsnotify_queue_drops_total"] == 0
        for ws in (v1, plain, again):
            await ws.close()
    run(go(), timeout=120)
