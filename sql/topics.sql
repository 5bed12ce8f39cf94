-- Topics: publish_ws to subscribers, server-side and client subscriptions
-- (the latter authorized by $subscribe), presence, fetch and replay.
CREATE EXTENSION wsnotify;
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('a1', 'alice', 'b1'), ('a2', 'alice', 'b2'), ('b1c', 'bob', 'b1'),
       ('c1', 'carol', 'b2');

-- Server-side subscriptions; again is fine; a gone connection is false.
SELECT ws_subscribe('a1', 'room:1');
SELECT ws_subscribe('a1', 'room:1');
SELECT ws_subscribe('a2', 'room:1');
SELECT ws_subscribe('b1c', 'room:1');
SELECT ws_subscribe('c1', 'room:2');
SELECT ws_subscribe('gone', 'room:1');
SELECT connection_id, user_id, topic FROM websocket_subscription ORDER BY 1, 3;

-- Presence: who is subscribed now, with how many connections.
SELECT * FROM ws_presence('room:1');
SELECT * FROM ws_presence('empty');

-- publish_ws counts subscribers at call time and sends at commit.
SELECT publish_ws('room:1', '{"say": "hello room 1"}') AS subscribers;
SELECT publish_ws('room:2', '{"say": "hello room 2"}') AS subscribers;
SELECT publish_ws('nobody-here', '{"say": "echo"}') AS subscribers;
BEGIN;
SELECT publish_ws('room:1', '{"say": "rolled back"}');
ROLLBACK;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT id, kind, target, body FROM websocket_message ORDER BY id;

-- Each bridge fetches topic messages with its own subscribed connections.
SELECT * FROM wsnotify_fetch('b1', 0, 100);
SELECT * FROM wsnotify_fetch('b2', 0, 100);

-- Replay includes the topics the resuming connection is subscribed to.
SELECT * FROM wsnotify_replay('c1', 1, 3);

-- Unsubscribe; subscriptions go with their connection.
SELECT ws_unsubscribe('a1', 'room:1');
SELECT ws_unsubscribe('a1', 'room:1');
SELECT wsnotify_disconnect('b1c');
SELECT * FROM ws_presence('room:1');

-- Bad topic names and NULLs.
SELECT publish_ws('has space', '{}');
SELECT publish_ws('', '{}');
SELECT publish_ws(repeat('t', 129), '{}');
SELECT publish_ws('ünïcode', '{}');
SELECT publish_ws(NULL, '{}');
SELECT publish_ws('ok', NULL);
SELECT ws_subscribe(NULL, 'ok');
SELECT ws_subscribe('a1', 'bad topic');

-- Client subscriptions: refused without a $subscribe route, then decided by it.
SELECT wsnotify_client_subscribe('a1', 'room:9');
CREATE FUNCTION may_subscribe(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF message ->> 'topic' LIKE 'private:%' THEN
        RAISE EXCEPTION 'private topics are not for %', connection ->> 'user_id';
    END IF;
    RETURN to_jsonb(message ->> 'topic' LIKE 'room:%');
END $$;
SELECT ws_route('$subscribe', 'may_subscribe(jsonb,jsonb)');
SELECT wsnotify_client_subscribe('a1', 'room:9');
SELECT wsnotify_client_subscribe('a1', 'lobby');
SELECT wsnotify_client_subscribe('a1', 'private:x');
SELECT wsnotify_client_subscribe('gone', 'room:9');
SELECT wsnotify_client_unsubscribe('a1', 'room:9');
SELECT topic FROM websocket_subscription WHERE connection_id = 'a1';

-- An application role may subscribe connections and publish, not write the
-- table directly.
CREATE ROLE wsnotify_test_app;
SET ROLE wsnotify_test_app;
SELECT ws_subscribe('a2', 'room:3');
SELECT publish_ws('room:3', '{"from": "app"}');
INSERT INTO websocket_subscription (connection_id, user_id, topic) VALUES ('a2', 'alice', 'x');
SELECT wsnotify_client_subscribe('a2', 'room:4');
RESET ROLE;
DROP ROLE wsnotify_test_app;

DROP EXTENSION wsnotify;
DROP FUNCTION may_subscribe(jsonb, jsonb);
