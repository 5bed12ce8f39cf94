-- ALTER EXTENSION wsnotify UPDATE from 1.0 to 1.1 on a database with
-- retained messages: their ids stay their positions, a resume from one of
-- them still works, and what is sent after the update follows them.
CREATE EXTENSION wsnotify VERSION '1.0';
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c1', 'alice', 'b1');
-- rows as 1.0 wrote them (ids from the sequence, in commit order)
INSERT INTO websocket_message (id, sent_at, kind, target, body)
VALUES (1, now(), 'u', 'alice', '{"n": 1}'), (2, now(), 'b', NULL, '{"n": 2}');
SELECT setval('websocket_message_id_seq', 2) AS last_1_0_id;

-- the 1.1 library refuses to send into 1.0 tables, and says what to do
\set VERBOSITY terse
SELECT send_ws('alice', '{"n": "too early"}');
\set VERBOSITY default

ALTER EXTENSION wsnotify UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'wsnotify';

SELECT send_ws('alice', '{"n": 3}');
SELECT wsnotify_order_barrier() AS ordered;
SELECT id, kind, target, body, xid IS NOT NULL AS has_xid
FROM websocket_message ORDER BY id;

-- a 1.0 cursor (a message id) resumes
SELECT id, kind, body FROM wsnotify_replay('c1', '1', 3);
-- a ws_cursor() of another history (epoch) gets the reset
SELECT id, kind FROM wsnotify_replay('c1', '0123456789abcdef:3:1000:1000:', 3);
-- a malformed one too
SELECT id, kind FROM wsnotify_replay('c1', 'not a cursor', 3);
-- one of this history: what its snapshot did not see
SELECT ws_cursor() ~ '^[0-9a-f]{16}:3:[0-9]+:[0-9]+:([0-9]+(,[0-9]+)*)?$' AS cursor_format;
SELECT set_config('test.cursor', ws_cursor(), false) IS NOT NULL AS saved;
SELECT send_ws('alice', '{"n": 4}');
SELECT wsnotify_order_barrier() AS ordered;
SELECT id, kind, body FROM wsnotify_replay('c1', current_setting('test.cursor'), 4);

-- the upgraded schema is the fresh one
SELECT count(*) AS columns FROM pg_attribute
WHERE attrelid = 'websocket_message'::regclass AND attnum > 0 AND NOT attisdropped;
SELECT indexrelid::regclass AS index FROM pg_index
WHERE indrelid = 'websocket_message'::regclass ORDER BY 1;

-- ... and so is every function (arguments, result, body, settings, grants),
-- column, index, trigger and table grant
CREATE FUNCTION pg_temp.schema_of_wsnotify() RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT format('function %s(%s) %s %s %s %s %s %s', p.proname,
                  pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
                  p.provolatile, p.prosecdef, p.proconfig, p.proacl, md5(p.prosrc))
    FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify'
    UNION ALL
    SELECT format('column %s.%s %s %s %s', c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid))
    FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify'
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('table %s %s', c.relname, c.relacl)
    FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify'
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify'
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify'
    WHERE NOT t.tgisinternal
$$;
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.schema_of_wsnotify() AS s(item);
DROP EXTENSION wsnotify;
CREATE EXTENSION wsnotify;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.schema_of_wsnotify() AS s(item);
SELECT 'only upgraded' AS side, item FROM (TABLE upgraded EXCEPT TABLE fresh) AS x
UNION ALL
SELECT 'only fresh', item FROM (TABLE fresh EXCEPT TABLE upgraded) AS y
ORDER BY 2, 1;
DROP EXTENSION wsnotify;
