-- send_ws_binary, send_ws_connection_binary, broadcast_ws_binary and
-- publish_ws_binary: bytes reach the outbox as bytea, the bridge functions
-- hand them over as base64 with is_binary, and the $binary route takes a
-- client's binary frames as bytea.
CREATE EXTENSION wsnotify;

INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c1', 'alice', 'b1'), ('c2', 'alice', 'b1'), ('c3', 'bob', 'b2');
SELECT ws_subscribe('c3', 'room:1');

-- Return values as for the JSON forms.
SELECT send_ws_binary('alice', '\x00ff01') AS alice_connections;
SELECT send_ws_binary('carol', '\x02') AS offline_user_connections;
SELECT broadcast_ws_binary('\x03') AS everyone;
SELECT send_ws_connection_binary('c3', '\x04') AS live_connection;
SELECT send_ws_connection_binary('gone', '\x05') AS gone_connection;
SELECT publish_ws_binary('room:1', '') AS subscribers;
SELECT send_ws('alice', '{"json": true}') AS json_after_binary;

SELECT wsnotify_order_barrier() AS ordered \gset
-- Exactly one of body and body_binary is set.
SELECT id, kind, target, body, body_binary FROM websocket_message ORDER BY id;
\set VERBOSITY terse
INSERT INTO websocket_message (id, sent_at, kind, target, body, body_binary)
VALUES (100, now(), 'b', NULL, '{}', '\x00');
INSERT INTO websocket_message (id, sent_at, kind, target, body, body_binary)
VALUES (100, now(), 'b', NULL, NULL, NULL);
\set VERBOSITY default

-- All 256 byte values survive the outbox and come back as one line of base64.
SELECT broadcast_ws_binary((SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i)
                            FROM generate_series(0, 255) AS i));
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT length(m.body_binary) AS bytes,
       m.body_binary = (SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i)
                        FROM generate_series(0, 255) AS i) AS all_bytes_kept
FROM websocket_message m ORDER BY id DESC LIMIT 1;
SELECT f.id, f.kind, f.is_binary, strpos(f.body, E'\n') = 0 AS one_line,
       CASE WHEN f.is_binary THEN decode(f.body, 'base64') = m.body_binary
            ELSE f.body::jsonb = m.body END AS body_comes_back
FROM wsnotify_fetch('b1', 0, 100) f
LEFT JOIN websocket_message m USING (id) ORDER BY f.id, f.kind;
SELECT id, kind, target, left(body, 12) AS body_start, length(body) AS body_length,
       connections, is_binary
FROM wsnotify_fetch('b2', 0, 100);

-- A resuming client gets binary messages the same way.
SELECT id, kind, left(body, 16) AS body_start, is_binary FROM wsnotify_replay('c1', 1, 7);

-- A binary message of 1 MB: exact, also through base64.
SELECT send_ws_binary('bob', decode(repeat('00ff7f80', 262144), 'hex')) AS one_megabyte;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT length(decode(f.body, 'base64')) AS fetched_bytes,
       decode(f.body, 'base64') = decode(repeat('00ff7f80', 262144), 'hex') AS exact
FROM wsnotify_fetch('b2', 7, 100) f WHERE f.is_binary;

-- Errors: NULLs name the argument; the size limit counts bytes.
SELECT send_ws_binary(NULL, '\x00');
SELECT send_ws_binary('alice', NULL);
SELECT send_ws_connection_binary(NULL, '\x00');
SELECT send_ws_connection_binary('c1', NULL);
SELECT broadcast_ws_binary(NULL);
SELECT publish_ws_binary(NULL, '\x00');
SELECT publish_ws_binary('room:1', NULL);
SELECT publish_ws_binary('bad topic', '\x00');
SET wsnotify.max_message_size = '1kB';
SELECT send_ws_binary('alice', decode(repeat('00', 1024), 'hex')) AS at_the_limit;
SELECT send_ws_binary('alice', decode(repeat('00', 1025), 'hex'));
RESET wsnotify.max_message_size;
BEGIN READ ONLY;
SELECT broadcast_ws_binary('\x00');
ROLLBACK;
-- No overload: an untyped literal still means send_ws(text, jsonb).
SELECT send_ws('alice', '{"untyped": true}') AS untyped_literal;

SELECT wsnotify_order_barrier() AS ordered \gset
-- A rolled-back transaction sends nothing.
SELECT count(*) AS before FROM websocket_message;
BEGIN;
SELECT broadcast_ws_binary('\x0102');
ROLLBACK;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS after_rollback FROM websocket_message;

-- The $binary route: a handler (connection jsonb, message bytea).
CREATE FUNCTION on_bytes(connection jsonb, message bytea) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('user', connection ->> 'user_id',
                              'length', length(message),
                              'md5', md5(message))
$$;
CREATE FUNCTION on_json(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT message $$;
-- no $binary route yet: 42883 (the bridge closes with 1003)
SELECT wsnotify_invoke_binary('c1', '\x00');
SELECT ws_route('$binary', 'on_json(jsonb,jsonb)');
SELECT ws_route('bytes', 'on_bytes(jsonb,bytea)');
SELECT ws_route('$binary', 'on_bytes(jsonb,bytea)');
SELECT wsnotify_invoke_binary('c1', '\x00ff') AS reply;
SELECT wsnotify_invoke_binary('c1', (SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i)
                                     FROM generate_series(0, 255) AS i))
       = jsonb_build_object('user', 'alice', 'length', 256,
                            'md5', md5((SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i)
                                        FROM generate_series(0, 255) AS i))) AS all_bytes_reach_handler;
SELECT wsnotify_invoke_binary('gone', '\x00');
-- a client's text frame never reaches $binary; nor does wsnotify_invoke_route
SELECT wsnotify_invoke('c1', '{"action": "$binary"}');
SELECT wsnotify_invoke_route('$binary', '{}', '{}');
SELECT ws_unroute('$binary');

DROP FUNCTION on_bytes(jsonb, bytea), on_json(jsonb, jsonb);
DROP EXTENSION wsnotify;
