"""Delivery rules: commit-only, order, size, addressing."""
import asyncio
import json

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
