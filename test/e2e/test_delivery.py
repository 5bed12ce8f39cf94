"""Delivery rules: commit-only, order, size, addressing."""
import asyncio
import json
import re
import time

import pytest
import websockets

from conftest import connect, expect_silence, recv_json, run, token, wait_for


def test_send_ws_delivers_the_exact_json(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        assert db.sql("SELECT send_ws('alice', '{\"text\": \"hi\", \"n\": [1, 2]}')")[0][0] == 1
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"text": "hi", "n": [1, 2]}
        await ws.close()
    run(go())


def test_rolled_back_transaction_delivers_nothing(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        with db.connect(autocommit=False) as conn:
            conn.execute("SELECT send_ws('alice', '{\"n\": 1}')")
            conn.rollback()
        db.sql("SELECT send_ws('alice', '{\"n\": 2}')")
        assert await recv_json(ws) == {"n": 2}
        await expect_silence(ws, 0.3)
        await ws.close()
    run(go())


def test_messages_of_a_transaction_arrive_in_order(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        with db.connect(autocommit=False) as conn:
            for i in range(200):
                conn.execute("SELECT send_ws('alice', jsonb_build_object('i', %s::int))", (i,))
            conn.commit()
        got = [(await recv_json(ws))["i"] for _ in range(200)]
        assert got == list(range(200))
        await ws.close()
    run(go())


def test_one_megabyte_message_arrives_whole(bridges, db):
    b = bridges(args=["--max-message-size", "4MiB"])
    big = "x" * (1024 * 1024)

    async def go():
        ws = await connect(b, "alice")
        db.sql("SELECT send_ws('alice', jsonb_build_object('big', %s::text))", big)
        msg = await recv_json(ws, timeout=10)
        assert msg["big"] == big
        await ws.close()
    run(go())


def test_trigger_delivers_on_commit(bridge, db):
    db.sql("CREATE TABLE orders (id serial, owner text, item text)")
    db.sql("""CREATE FUNCTION notify_owner() RETURNS trigger LANGUAGE plpgsql AS
              $$BEGIN PERFORM send_ws(NEW.owner, jsonb_build_object('order', NEW.item));
              RETURN NEW; END$$""")
    db.sql("CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION notify_owner()")

    async def go():
        ws = await connect(bridge, "alice")
        db.sql("INSERT INTO orders (owner, item) VALUES ('alice', 'book')")
        assert await recv_json(ws) == {"order": "book"}
        await ws.close()
    run(go())


def test_both_connections_of_one_user_receive(bridge, db):
    async def go():
        a1 = await connect(bridge, "alice")
        a2 = await connect(bridge, "alice")
        assert db.sql("SELECT send_ws('alice', '{\"x\": 1}')")[0][0] == 2
        assert await recv_json(a1) == {"x": 1}
        assert await recv_json(a2) == {"x": 1}
        await a1.close()
        await a2.close()
    run(go())


def test_other_users_receive_nothing(bridge, db):
    async def go():
        a = await connect(bridge, "alice")
        b = await connect(bridge, "bob")
        db.sql("SELECT send_ws('alice', '{\"x\": 1}')")
        assert await recv_json(a) == {"x": 1}
        await expect_silence(b, 0.3)
        await a.close()
        await b.close()
    run(go())


def test_send_ws_connection_reaches_exactly_that_socket(bridge, db):
    async def go():
        a1 = await connect(bridge, "alice")
        a2 = await connect(bridge, "alice")
        ids = [r[0] for r in db.sql("SELECT connection_id FROM websocket_client ORDER BY connected_at")]
        assert db.sql("SELECT send_ws_connection(%s, '{\"only\": 1}')", ids[0])[0][0] is True
        got1 = await recv_json(a1)
        await expect_silence(a2, 0.3)
        assert got1 == {"only": 1}
        await a1.close()
        await a2.close()
    run(go())


def test_broadcast_reaches_every_connection(bridge, db):
    async def go():
        socks = [await connect(bridge, u) for u in ("alice", "bob", "carol")]
        assert db.sql("SELECT broadcast_ws('{\"all\": true}')")[0][0] == 3
        for ws in socks:
            assert await recv_json(ws) == {"all": True}
            await ws.close()
    run(go())


def test_close_ws_closes_with_code_and_reason_after_earlier_messages(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        cid = db.sql("SELECT connection_id FROM websocket_client")[0][0]
        with db.connect(autocommit=False) as conn:
            conn.execute("SELECT send_ws('alice', '{\"last\": 1}')")
            conn.execute("SELECT close_ws(%s, 4100, 'bye now')", (cid,))
            conn.commit()
        assert await recv_json(ws) == {"last": 1}
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4100
        assert ws.close_reason == "bye now"
    run(go())
    wait_for(lambda: db.sql("SELECT count(*) FROM websocket_client")[0][0] == 0, what="row removed")


def test_message_sent_before_connecting_is_not_delivered(bridge, db):
    async def go():
        db.sql("SELECT broadcast_ws('{\"old\": 1}')")
        ws = await connect(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"new\": 1}')")
        assert await recv_json(ws) == {"new": 1}
        await ws.close()
    run(go())


def test_client_message_over_max_message_size_closes_with_1009(bridges):
    b = bridges(args=["--max-message-size", "1KiB"])

    async def go():
        ws = await connect(b, "alice")
        await ws.send("y" * 4096)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009
    run(go())


def delivery_counters(b):
    m = b.metrics()
    return m["wsnotify_rows_inline_total"], m["wsnotify_rows_fetched_total"]


def test_small_messages_come_inline_large_and_topic_ones_are_fetched_in_one_order(bridge, db):
    """A transaction's small messages ride in its NOTIFY payload (no fetch);
    one over 1 kB, or a topic message, makes the bridge fetch instead; the
    client sees one stream in commit order either way."""
    big = "x" * 2000

    async def go():
        alice = await connect(bridge, "alice")
        everyone = await connect(bridge, "bob")
        inline0, fetched0 = delivery_counters(bridge)
        for i in range(5):
            db.sql("SELECT send_ws('alice', jsonb_build_object('i', %s::int))", i)
        db.sql("SELECT broadcast_ws('{\"all\": 1}')")
        db.sql("SELECT send_ws_connection(connection_id, '{\"conn\": 1}') "
               "FROM websocket_client WHERE user_id = 'alice'")
        assert [await recv_json(alice) for _ in range(7)] == \
            [{"i": i} for i in range(5)] + [{"all": 1}, {"conn": 1}]
        assert await recv_json(everyone) == {"all": 1}
        inline1, fetched1 = delivery_counters(bridge)
        assert (inline1 - inline0, fetched1 - fetched0) == (7, 0)

        db.sql("SELECT send_ws('alice', jsonb_build_object('big', %s::text))", big)
        db.sql("SELECT send_ws('alice', '{\"after\": \"big\"}')")
        assert (await recv_json(alice))["big"] == big
        assert await recv_json(alice) == {"after": "big"}
        inline2, fetched2 = delivery_counters(bridge)
        assert fetched2 - fetched1 >= 1
        assert (inline2 - inline1) + (fetched2 - fetched1) == 2   # each once, one way or the other

        # a topic message is fetched too, in order with an inline one after it
        cid = db.sql("SELECT connection_id FROM websocket_client WHERE user_id = 'alice'")[0][0]
        db.sql("SELECT ws_subscribe(%s, 'room:1')", cid)
        db.sql("SELECT publish_ws('room:1', '{\"topic\": 1}')")
        db.sql("SELECT send_ws('alice', '{\"after\": \"topic\"}')")
        assert await recv_json(alice) == {"topic": 1}
        assert await recv_json(alice) == {"after": "topic"}
        inline3, fetched3 = delivery_counters(bridge)
        assert fetched3 - fetched2 >= 1
        assert (inline3 - inline2) + (fetched3 - fetched2) == 2
        await alice.close()
        await everyone.close()
    run(go())


def test_resume_seam_is_exact_while_small_messages_stream_inline(bridge, db):
    """A stream of small (inline) messages to one user while a wsnotify.v1
    client drops and resumes twenty times: each resume continues exactly
    after the last message it had, no gap and no duplicate, whether a message
    came by replay or inline in a NOTIFY that arrived during the upgrade."""
    stop = [False]

    def sender():
        with db.connect() as conn:
            i = 0
            while not stop[0]:
                conn.execute("SELECT send_ws('carol', jsonb_build_object('i', %s::int))", (i,))
                i += 1
                time.sleep(0.002)     # a few hundred per second: the backlog stays small

    async def v1(since=None):
        url = bridge.ws_url(token("carol")) + (f"&since={since}" if since else "")
        # max_queue=None: read everything, as a browser does (a bounded queue
        # stops reading, and the close handshake waits behind the backlog)
        return await websockets.connect(url, subprotocols=["wsnotify.v1"], max_queue=None)

    inline0 = bridge.metrics()["wsnotify_rows_inline_total"]

    async def go():
        task = asyncio.create_task(asyncio.to_thread(sender))
        try:
            ws = await v1()
            frame = await recv_json(ws)
            last_id, last_i = frame["id"], frame["data"]["i"]
            for _ in range(20):
                for _ in range(3):
                    frame = await recv_json(ws)
                    assert frame["data"]["i"] == last_i + 1, (frame, last_i)
                    last_id, last_i = frame["id"], frame["data"]["i"]
                await ws.close()
                await asyncio.sleep(0.01)      # messages keep coming meanwhile
                ws = await v1(last_id)
            await ws.close()
        finally:
            stop[0] = True
            await task
    run(go(), timeout=60)
    # the seam under test is the one between replay and inline delivery: both
    # must have happened, or this only re-tests resume with fetched rows
    assert bridge.metrics()["wsnotify_rows_inline_total"] > inline0
    replayed = [int(n) for n in re.findall(r"resumed: (\d+) missed messages replayed", bridge.log())]
    assert any(replayed), replayed       # (the last resume may close before its replay ends)


def test_notifications_arriving_during_a_fetch_are_delivered_after_it_in_order(bridge, db):
    """Four senders stream small messages while a fifth sends ones over 1 kB,
    which the bridge must fetch. A NOTIFY that reaches the bridge while a
    fetch is in flight (the backend sends waiting notifications when it reads
    the fetch) is held, then delivered when the fetch ends or found among its
    rows, instead of asking for another fetch; the client still gets every
    message once, each sender's in its order. The senders run until a hold
    has happened (well under a second here), at most 20 s."""
    stop = [False]
    sent = {}

    def sender(name, big):
        with db.connect() as conn:
            i = 0
            while not stop[0]:
                body = {"s": name, "i": i}
                if big:
                    body["pad"] = "x" * 1500
                    time.sleep(0.005)
                conn.execute("SELECT send_ws('dora', %s::jsonb)", (json.dumps(body),))
                i += 1
            sent[name] = i

    held0 = bridge.metrics()["wsnotify_inline_held_total"]

    async def go():
        ws = await connect(bridge, "dora")
        tasks = [asyncio.create_task(asyncio.to_thread(sender, f"s{k}", k == 4))
                 for k in range(5)]
        got = {}

        async def drain(until):
            while time.time() < until:
                try:
                    m = await asyncio.wait_for(ws.recv(), 0.05)
                except asyncio.TimeoutError:
                    continue
                m = json.loads(m)
                got.setdefault(m["s"], []).append(m["i"])

        deadline = time.time() + 20
        while time.time() < deadline and bridge.metrics()["wsnotify_inline_held_total"] == held0:
            await drain(time.time() + 0.2)
        stop[0] = True
        await asyncio.gather(*tasks)
        while sum(len(v) for v in got.values()) < sum(sent.values()):
            m = await recv_json(ws)
            got.setdefault(m["s"], []).append(m["i"])
        await expect_silence(ws, 0.3)
        assert {s: got.get(s, []) for s in sent} == {s: list(range(n)) for s, n in sent.items()}
        await ws.close()
    run(go(), timeout=60)
    assert bridge.metrics()["wsnotify_inline_held_total"] > held0
