-- The functions the bridge calls: start, heartbeat and reaping, fetch with
-- its cursor, disconnect, purge; and that nobody else may call them.
CREATE EXTENSION wsnotify;

SELECT * FROM wsnotify_bridge_start('b1');
SELECT * FROM wsnotify_bridge_start('b2');

INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c1', 'alice', 'b1'), ('c2', 'bob', 'b2'), ('c3', 'alice', 'b2');

SELECT send_ws('alice', '{"n": 1}');
SELECT send_ws('bob', '{"n": 2}');
SELECT send_ws('carol', '{"n": 3}');
SELECT broadcast_ws('{"n": 4}');
SELECT send_ws_connection('c2', '{"n": 5}');
SELECT close_ws('c1', 4001, 'token expired');

SELECT wsnotify_order_barrier() AS ordered \gset
-- Each bridge fetches what concerns its own connections, then the cursor.
SELECT * FROM wsnotify_fetch('b1', 0, 100);
SELECT * FROM wsnotify_fetch('b2', 0, 100);
-- From a cursor, only what follows it.
SELECT * FROM wsnotify_fetch('b2', 4, 100);
-- A full batch ends at its last id, so the next fetch continues from there.
SELECT * FROM wsnotify_fetch('b2', 0, 2);
SELECT * FROM wsnotify_fetch('b2', 2, 2);
-- Nothing new: the cursor stays.
SELECT * FROM wsnotify_fetch('b1', 6, 100);

-- A connection's start cursor: what was sent before it connected is not its.
SELECT count(*) AS messages_before FROM websocket_message;

-- Disconnect removes the row, once.
SELECT wsnotify_disconnect('c1');
SELECT wsnotify_disconnect('c1');
SELECT connection_id FROM websocket_client ORDER BY 1;

-- A bridge that misses its heartbeats loses its rows to any live bridge.
UPDATE websocket_bridge SET heartbeat_at = now() - interval '1 hour' WHERE bridge_id = 'b2';
SELECT wsnotify_heartbeat('b1', interval '30 seconds') AS reaped;
SELECT count(*) AS rows_of_dead_bridge FROM websocket_client WHERE bridge_id = 'b2';
SELECT bridge_id FROM websocket_bridge ORDER BY 1;

-- A bridge restarting under the same id drops the rows of its previous life.
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c4', 'dave', 'b1');
SELECT reaped FROM wsnotify_bridge_start('b1');
SELECT count(*) AS rows_of_b1 FROM websocket_client WHERE bridge_id = 'b1';

SELECT wsnotify_order_barrier() AS ordered \gset
-- Retention: messages older than wsnotify.retention are purged.
UPDATE websocket_message SET sent_at = now() - interval '10 minutes' WHERE id <= 3;
SET wsnotify.retention = '5min';
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT wsnotify_purge() AS purged;
SELECT min(id) AS oldest_kept FROM websocket_message;

-- Only members of wsnotify_bridge may run these; an application role cannot,
-- nor write websocket_client or read the outbox, but can send and read who
-- is online.
CREATE ROLE wsnotify_test_app;
CREATE ROLE wsnotify_test_bridge IN ROLE wsnotify_bridge;
SET ROLE wsnotify_test_app;
\set VERBOSITY terse
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT * FROM wsnotify_fetch('b1', 0, 10);
SELECT wsnotify_disconnect('c2');
SELECT * FROM wsnotify_bridge_start('evil');
SELECT wsnotify_heartbeat('evil', interval '1 second');
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT wsnotify_purge();
SELECT * FROM wsnotify_connect('x', 'evil', 'token', NULL, NULL);
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('fake', 'alice', 'b1');
DELETE FROM websocket_client;
UPDATE websocket_client SET user_id = 'mallory';
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) FROM websocket_message;
INSERT INTO websocket_message VALUES (1000, now(), 'b', NULL, '{}');
SELECT nextval('websocket_message_id_seq');
SELECT count(*) AS online FROM websocket_client;
SELECT send_ws('alice', '{"from": "app"}') AS app_can_send;
RESET ROLE;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS sent_by_app FROM websocket_message WHERE body ->> 'from' = 'app';
SET ROLE wsnotify_test_bridge;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS bridge_can_fetch FROM wsnotify_fetch('b1', 0, 10);
RESET ROLE;
\set VERBOSITY default

DROP ROLE wsnotify_test_app;
DROP ROLE wsnotify_test_bridge;
DROP EXTENSION wsnotify;
