-- The outbox writer (extension/outbox.c): rows go to websocket_message and
-- every one of its indexes without the executor, in batches; a table someone
-- changed (a trigger, an expression index, another CHECK) takes the INSERT
-- instead, so what they added still runs.
CREATE EXTENSION wsnotify;
CREATE EXTENSION amcheck;

-- 2,500 messages in one transaction cross the writer's 1,000-row batches;
-- positions are contiguous, and every heap row has its index entries.
BEGIN;
SELECT count(send_ws('u' || i, jsonb_build_object('i', i))) FROM generate_series(1, 2500) i;
COMMIT;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS rows, max(id) - min(id) + 1 AS id_span,
       count(*) FILTER (WHERE body ->> 'i' = substr(target, 2)) AS matching
FROM websocket_message;
SELECT bt_index_check('websocket_message_unpositioned_idx', true), bt_index_check('websocket_message_position_idx', true);

-- Every kind, binary and JSON, and a body large enough to be TOASTed.
SELECT send_ws_binary('u1', '\x00ff'::bytea), broadcast_ws('{"all": 1}'),
       publish_ws('room', '{"t": 1}'), send_ws('u2', jsonb_build_object('big', repeat('y', 100000)));
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT kind, target, body_binary, length(body::text) > 100000 AS big
FROM websocket_message WHERE id > 2500 ORDER BY id;
SELECT bt_index_check('websocket_message_unpositioned_idx', true), bt_index_check('websocket_message_position_idx', true);

-- sent_at grows with id: rows of one commit share it, later commits' are later.
SELECT bool_and(sent_at >= prev) AS sent_at_grows_with_id
FROM (SELECT sent_at, lag(sent_at, 1, '-infinity') OVER (ORDER BY id) AS prev
      FROM websocket_message) m;

-- A trigger on the outbox runs for each row: the INSERT path is taken.
CREATE TABLE outbox_audit (id bigint);
CREATE FUNCTION outbox_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO outbox_audit VALUES (NEW.seq); RETURN NEW; END $$;
CREATE TRIGGER outbox_audit AFTER INSERT ON websocket_message
    FOR EACH ROW EXECUTE FUNCTION outbox_audit();
SELECT send_ws('u3', '{"audited": 1}'), send_ws('u3', '{"audited": 2}');
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS audited FROM outbox_audit;
DROP TRIGGER outbox_audit ON websocket_message;

-- An expression index is kept up to date through the INSERT path.
CREATE INDEX outbox_target_lower ON websocket_message (lower(target));
SELECT send_ws('MiXeD', '{"expr": 1}');
SET enable_seqscan = off;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message WHERE lower(target) = 'mixed';
RESET enable_seqscan;
SELECT bt_index_check('outbox_target_lower', true);
DROP INDEX outbox_target_lower;

-- A CHECK constraint someone added is enforced: the commit fails, nothing is
-- written.
ALTER TABLE websocket_message ADD CONSTRAINT small_bodies
    CHECK (body IS NULL OR length(body::text) < 50) NOT VALID;
\set VERBOSITY terse
SELECT send_ws('u4', jsonb_build_object('long', repeat('z', 100)));
\set VERBOSITY default
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS long_written FROM websocket_message WHERE body ? 'long';
ALTER TABLE websocket_message DROP CONSTRAINT small_bodies;

-- A plain index added later takes rows through the direct path too.
CREATE INDEX outbox_target ON websocket_message (target);
SELECT send_ws('plain-index', '{"plain": 1}');
SELECT bt_index_check('outbox_target', true);
SET enable_seqscan = off;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message WHERE target = 'plain-index';
RESET enable_seqscan;
DROP INDEX outbox_target;

DROP EXTENSION amcheck;
DROP EXTENSION wsnotify;
DROP TABLE outbox_audit;
DROP FUNCTION outbox_audit();
