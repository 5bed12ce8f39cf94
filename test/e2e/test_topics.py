"""Topics and presence through real bridges: publish_ws, subscriptions made
by clients (decided by $subscribe) and by the server, resume, join/leave."""
import json

from conftest import connect, expect_silence, recv_json, run, wait_for
from test_resume import connect_v1
from test_routes import route


def connection_ids(db, user):
    return [r[0] for r in db.sql(
        "SELECT connection_id FROM websocket_client WHERE user_id = %s ORDER BY 1", user)]


def test_publish_reaches_subscribers_on_two_bridges_and_nobody_else(bridges, db):
    b1, b2 = bridges(bridge_id="t1"), bridges(bridge_id="t2")

    async def go():
        alice = await connect(b1, "alice")
        bob = await connect(b2, "bob")
        carol = await connect(b1, "carol")
        wait_for(lambda: len(db.sql("SELECT 1 FROM websocket_client")) == 3)
        for user in ("alice", "bob"):
            db.sql("SELECT ws_subscribe(%s, 'room:1')", connection_ids(db, user)[0])
        assert db.sql("SELECT publish_ws('room:1', '{\"say\": \"hi\"}')")[0][0] == 2
        assert await recv_json(alice) == {"say": "hi"}
        assert await recv_json(bob) == {"say": "hi"}
        await expect_silence(carol)
        for ws in (alice, bob, carol):
            await ws.close()
    run(go())


def test_client_subscription_is_refused_without_a_subscribe_route(bridge, db):
    async def go():
        ws = await connect_v1(bridge, "alice")
        await ws.send(json.dumps({"action": "subscribe", "topic": "room:1", "request_id": 1}))
        frame = await recv_json(ws)
        assert frame["type"] == "error" and frame["request_id"] == 1
        assert "server" in frame["message"]
        assert db.sql("SELECT count(*) FROM websocket_subscription")[0][0] == 0
        await ws.close()
    run(go())


def test_subscribe_route_decides_and_messages_follow_the_subscription(bridge, db):
    route(db, "$subscribe", "SELECT to_jsonb(m->>'topic' LIKE 'room:%')")

    async def go():
        ws = await connect_v1(bridge, "alice")
        await ws.send(json.dumps({"action": "subscribe", "topic": "room:7", "request_id": "s"}))
        assert await recv_json(ws) == {"type": "reply", "request_id": "s",
                                       "data": {"subscribed": "room:7"}}
        await ws.send(json.dumps({"action": "subscribe", "topic": "secret", "request_id": "x"}))
        refused = await recv_json(ws)
        assert refused["type"] == "error" and "refused" in refused["message"]
        await ws.send(json.dumps({"action": "subscribe", "topic": "bad topic!", "request_id": "b"}))
        bad = await recv_json(ws)
        assert bad["type"] == "error" and "invalid topic name" in bad["message"]
        db.sql("SELECT publish_ws('secret', '{\"n\": 0}')")
        db.sql("SELECT publish_ws('room:7', '{\"n\": 1}')")
        frame = await recv_json(ws)
        assert frame["data"] == {"n": 1}
        assert frame["topic"] == "room:7", "v1 topic frames name their topic"
        await ws.send(json.dumps({"action": "unsubscribe", "topic": "room:7", "request_id": "u"}))
        assert (await recv_json(ws))["data"] == {"unsubscribed": "room:7"}
        db.sql("SELECT publish_ws('room:7', '{\"n\": 2}')")
        await expect_silence(ws)
        await ws.close()
    run(go())


def test_connect_handler_subscribes_server_side(bridge, db):
    route(db, "$connect", "SELECT NULL::jsonb WHERE ws_subscribe(c->>'connection_id', 'news')",)

    async def go():
        ws = await connect(bridge, "alice")
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_subscription")[0][0] == 1)
        db.sql("SELECT publish_ws('news', '{\"headline\": 1}')")
        assert await recv_json(ws) == {"headline": 1}
        await ws.close()
    run(go())


def test_resumed_connection_gets_what_its_topics_received_while_away(bridge, db):
    route(db, "$connect", "SELECT NULL::jsonb WHERE ws_subscribe(c->>'connection_id', 'news')")

    async def go():
        ws = await connect_v1(bridge, "alice")
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_subscription")[0][0] == 1)
        db.sql("SELECT publish_ws('news', '{\"n\": 1}')")
        cursor = (await recv_json(ws))["id"]
        await ws.close()
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_client")[0][0] == 0)
        db.sql("SELECT publish_ws('news', '{\"n\": 2}')")
        db.sql("SELECT publish_ws('other', '{\"n\": 3}')")
        again = await connect_v1(bridge, "alice", since=cursor)
        replayed = await recv_json(again)
        assert (replayed["data"], replayed["topic"]) == ({"n": 2}, "news")
        await expect_silence(again)
        await again.close()
    run(go())


def test_subscriptions_go_with_their_connection(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        wait_for(lambda: len(connection_ids(db, "alice")) == 1)
        db.sql("SELECT ws_subscribe(%s, 'room:1')", connection_ids(db, "alice")[0])
        await ws.close()
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_subscription")[0][0] == 0,
                 what="subscription removed with its connection")
    run(go())


def test_presence_join_and_debounced_leave(bridge, db):
    db.sql("SELECT ws_topic_presence('room:1')")

    async def go():
        watcher = await connect(bridge, "bob")
        wait_for(lambda: len(connection_ids(db, "bob")) == 1)
        db.sql("SELECT ws_subscribe(%s, 'room:1')", connection_ids(db, "bob")[0])
        assert await recv_json(watcher) == {"presence": "join", "topic": "room:1", "user_id": "bob"}
        alice = await connect(bridge, "alice")
        wait_for(lambda: len(connection_ids(db, "alice")) == 1)
        db.sql("SELECT ws_subscribe(%s, 'room:1')", connection_ids(db, "alice")[0])
        assert await recv_json(watcher) == {"presence": "join", "topic": "room:1", "user_id": "alice"}
        await alice.close()
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_presence_leaving")[0][0] == 1)
        await expect_silence(watcher, 0.3)
        db.sql("UPDATE websocket_presence_leaving SET left_at = now() - interval '1 hour'")
        db.sql("SELECT wsnotify_publish_leaves()")
        assert await recv_json(watcher) == {"presence": "leave", "topic": "room:1", "user_id": "alice"}
        await watcher.close()
    run(go())


def test_topics_in_the_url_are_subscribed_at_connect_and_resumed(bridge, db):
    route(db, "$subscribe", "SELECT to_jsonb(m->>'topic' LIKE 'room:%')")

    async def go():
        url_topics = "&topics=room:1,secret"
        ws = await connect_v1(bridge, "alice", extra=url_topics)
        refused = await recv_json(ws)
        assert refused["type"] == "error" and refused["topic"] == "secret"
        db.sql("SELECT publish_ws('room:1', '{\"n\": 1}')")
        cursor = (await recv_json(ws))["id"]
        await ws.close()
        wait_for(lambda: db.sql("SELECT count(*) FROM websocket_client")[0][0] == 0)
        db.sql("SELECT publish_ws('room:1', '{\"n\": 2}')")
        db.sql("SELECT publish_ws('secret', '{\"n\": 3}')")
        again = await connect_v1(bridge, "alice", since=cursor, extra="&topics=room:1")
        assert (await recv_json(again))["data"] == {"n": 2}
        db.sql("SELECT publish_ws('room:1', '{\"n\": 4}')")
        assert (await recv_json(again))["data"] == {"n": 4}
        await expect_silence(again)
        await again.close()
    run(go())
