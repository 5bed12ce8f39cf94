-- wsnotify_replay: what a resuming wsnotify.v1 client receives, and when its
-- cursor is too old or unknown (a reset).
CREATE EXTENSION wsnotify;
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c1', 'alice', 'b1'), ('c2', 'bob', 'b1');

SELECT send_ws('alice', '{"n": 1}');            -- id 1
SELECT send_ws('bob', '{"n": 2}');              -- id 2
SELECT broadcast_ws('{"n": 3}');                -- id 3
SELECT send_ws('alice', '{"n": 4}');            -- id 4
SELECT send_ws_connection('c2', '{"n": 5}');    -- id 5: another connection's
SELECT send_ws('alice', '{"n": 6}');            -- id 6

SELECT wsnotify_order_barrier() AS ordered \gset
-- From cursor 1 up to the start cursor 6: alice's and everyone's messages,
-- in order, once; not bob's, not another connection's.
SELECT * FROM wsnotify_replay('c1', 1, 6);
-- Up to the start cursor only: what follows is live delivery's.
SELECT * FROM wsnotify_replay('c1', 1, 4);
-- Caught up: nothing.
SELECT * FROM wsnotify_replay('c1', 6, 6);
-- A cursor newer than anything sent, or one that never existed: reset.
SELECT * FROM wsnotify_replay('c1', 99, 6);
SELECT * FROM wsnotify_replay('c1', 0, 6);
-- An unknown connection: reset.
SELECT * FROM wsnotify_replay('nobody', 1, 6);

-- Once the cursor's own message is purged, the client may have missed
-- something: reset.
UPDATE websocket_message SET sent_at = now() - interval '1 hour' WHERE id <= 2;
SELECT wsnotify_purge();
SELECT * FROM wsnotify_replay('c1', 1, 6);
-- A cursor still retained resumes as before.
SELECT * FROM wsnotify_replay('c1', 3, 6);

DROP EXTENSION wsnotify;
