-- send_ws, send_ws_connection, broadcast_ws and close_ws: what reaches the
-- outbox, when, in which order, and the errors for bad arguments.
CREATE EXTENSION wsnotify;

-- Two live connections for alice, one for bob (only the bridge writes these
-- rows in production; a superuser may stand in for it here).
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c1', 'alice', 'b1'), ('c2', 'alice', 'b1'), ('c3', 'bob', 'b2');

-- The return values count live connections at call time.
SELECT send_ws('alice', '{"n": 1}') AS alice_connections;
SELECT send_ws('carol', '{"n": 2}') AS offline_user_connections;
SELECT broadcast_ws('{"n": 3}') AS everyone;
SELECT send_ws_connection('c3', '{"n": 4}') AS live_connection;
SELECT send_ws_connection('gone', '{"n": 5}') AS gone_connection;
SELECT close_ws('c2', 4000, 'bye') AS closed_live;
SELECT close_ws('gone') AS closed_gone;

SELECT wsnotify_order_barrier() AS ordered \gset
-- Offline users' messages are kept (for resume); gone connections' are not.
SELECT id, kind, target, body FROM websocket_message ORDER BY id;

-- A rolled-back transaction sends nothing.
BEGIN;
SELECT send_ws('alice', '{"rolled": "back"}');
ROLLBACK;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS after_rollback FROM websocket_message WHERE body ? 'rolled';

-- A rolled-back subtransaction drops its messages only; a released one keeps
-- them; the order is the order of the calls.
BEGIN;
SELECT send_ws('alice', '{"seq": 1}');
SAVEPOINT s1;
SELECT send_ws('alice', '{"seq": "dropped"}');
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT send_ws('alice', '{"seq": 2}');
RELEASE SAVEPOINT s2;
SELECT send_ws('alice', '{"seq": 3}');
COMMIT;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message WHERE body ? 'seq' ORDER BY id;

-- PL/pgSQL exception blocks are subtransactions too.
DO $$
BEGIN
    PERFORM send_ws('alice', '{"in_block": "lost"}');
    RAISE EXCEPTION 'boom';
EXCEPTION WHEN others THEN
    PERFORM send_ws('alice', '{"in_block": "kept"}');
END
$$;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message WHERE body ? 'in_block' ORDER BY id;

-- Nothing is written before commit: another transaction cannot see it, and
-- the ids are taken at commit, in commit order.
BEGIN;
SELECT send_ws('alice', '{"pending": true}');
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS visible_before_commit FROM websocket_message WHERE body ? 'pending';
COMMIT;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS visible_after_commit FROM websocket_message WHERE body ? 'pending';

-- A trigger can send; it is delivered with its transaction.
CREATE TABLE orders (id int PRIMARY KEY, owner text NOT NULL);
CREATE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM send_ws(NEW.owner, jsonb_build_object('order', NEW.id));
    RETURN NEW;
END
$$;
CREATE TRIGGER orders_notify AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_notify();
INSERT INTO orders VALUES (1, 'alice'), (2, 'bob');
BEGIN;
INSERT INTO orders VALUES (3, 'alice');
ROLLBACK;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT target, body FROM websocket_message WHERE body ? 'order' ORDER BY id;

-- Messages far beyond NOTIFY's 8000-byte payload limit arrive whole.
SELECT send_ws('alice', jsonb_build_object('big', repeat('x', 1024 * 1024)));
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT length(body ->> 'big') AS big_length FROM websocket_message WHERE body ? 'big';

-- Ids grow with every commit and are never reused after a rollback.
SELECT bool_and(id > 0) AS ids_positive, count(DISTINCT id) = count(*) AS ids_unique
FROM websocket_message;

-- Bad arguments: each error says what is wrong.
\set VERBOSITY default
SELECT send_ws(NULL, '{}');
SELECT send_ws('alice', NULL);
SELECT send_ws_connection(NULL, '{}');
SELECT send_ws_connection('c1', NULL);
SELECT broadcast_ws(NULL);
SELECT close_ws(NULL);
SELECT close_ws('c1', NULL);
SELECT close_ws('c1', 1000, NULL);
SELECT close_ws('c1', 1006);
SELECT close_ws('c1', 5000);
SELECT close_ws('c1', 4000, repeat('r', 124));
SET wsnotify.max_message_size = '1kB';
SELECT send_ws('alice', jsonb_build_object('big', repeat('x', 2000)));
RESET wsnotify.max_message_size;

-- A read-only transaction cannot send: it would fail at commit otherwise.
BEGIN READ ONLY;
SELECT send_ws('alice', '{}');
ROLLBACK;

-- Messages go at commit, which a prepared transaction does elsewhere.
BEGIN;
SELECT send_ws('alice', '{"prepared": true}');
PREPARE TRANSACTION 'wsnotify_test';
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS prepared_sent FROM websocket_message WHERE body ? 'prepared';

DROP TABLE orders;
DROP FUNCTION orders_notify();
DROP EXTENSION wsnotify;
