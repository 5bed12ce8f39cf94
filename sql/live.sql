-- Live interaction without a commit (1.1): signals, presence with state and
-- token refresh, as the bridge runs them (wsnotify_invoke for a client's
-- frame). Tokens minted with python3-jwt (HS256, the secret below).
CREATE EXTENSION wsnotify;
SET wsnotify.jwt_secret = 'connect-test-secret-0123456789abcdef';
SELECT ws_topic_presence('room:1');
SELECT user_id, expires_at AT TIME ZONE 'UTC' AS expires_utc
FROM wsnotify_connect('c1', 'b1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwicm9sZSI6Im1lbWJlciJ9.iUzJttltOk4h4Ex1Yx9v0BjN_ENpA4QnfU8O7v3qZ48',
    NULL, NULL);
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('c2', 'bob', 'b1');
SELECT ws_subscribe('c1', 'room:1'), ws_subscribe('c2', 'room:1');

-- signal_ws: checked like publish_ws, never stored; returns the subscribers
SELECT signal_ws('room:1', '{"typing": true}') AS subscribers;
SELECT signal_ws('nobody', '{"typing": true}') AS subscribers;
SELECT signal_ws(NULL, '{}');
SELECT signal_ws('room:1', NULL);
SELECT signal_ws('bad topic', '{}');
SELECT signal_ws('room:1', jsonb_build_object('big', repeat('x', 4100)));
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT count(*) AS stored FROM websocket_message WHERE body ? 'typing';
-- a rolled-back transaction's signal has gone all the same: nothing to undo
BEGIN;
SELECT signal_ws('room:1', '{"typing": false}') AS subscribers;
ROLLBACK;

-- the built-in actions cannot be routes; $signal can
CREATE FUNCTION allow_signals(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT to_jsonb(message ->> 'topic' LIKE 'room:%') $$;
SELECT ws_route('signal', 'allow_signals(jsonb,jsonb)');
SELECT ws_route('track', 'allow_signals(jsonb,jsonb)');

-- a client's signal: refused without a $signal route, then by its verdict
SELECT wsnotify_invoke('c1', '{"action": "signal", "topic": "room:1", "data": {"x": 1}}');
SELECT ws_route('$signal', 'allow_signals(jsonb,jsonb)');
SELECT wsnotify_invoke('c1', '{"action": "signal", "topic": "lobby", "data": {"x": 1}}');
SELECT wsnotify_invoke('c1', '{"action": "signal", "topic": "room:1"}');
SELECT wsnotify_invoke('c1', '{"action": "signal", "data": 1}');
SELECT wsnotify_invoke('c1', '{"action": "signal", "topic": "room:1", "data": {"x": 1}}') IS NULL
    AS sent_without_reply;
SELECT wsnotify_invoke('c1', jsonb_build_object('action', 'signal', 'topic', 'room:1',
                                                'data', repeat('y', 5000)));

-- presence state: tracked in a subscribed topic, in ws_presence, in an update
SELECT wsnotify_invoke('c1', '{"action": "track", "topic": "room:1", "state": {"cursor": [3, 4]}}');
SELECT * FROM ws_presence('room:1');
SELECT wsnotify_invoke('c1', '{"action": "track", "topic": "room:2", "state": {}}');
SELECT wsnotify_invoke('c1', '{"action": "track", "state": {}}');
SET wsnotify.presence_state_max_size = 16;
SELECT wsnotify_invoke('c1', '{"action": "track", "topic": "room:1", "state": {"much": "too long for sixteen"}}');
RESET wsnotify.presence_state_max_size;
-- the latest state of a user's connections is theirs
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('c3', 'alice', 'b1');
SELECT ws_subscribe('c3', 'room:1');
SELECT wsnotify_invoke('c3', '{"action": "track", "topic": "room:1", "state": {"cursor": [9, 9]}}');
SELECT * FROM ws_presence('room:1');
SELECT wsnotify_disconnect('c3');
SELECT * FROM ws_presence('room:1');
-- leaving takes the state along: the leave frame carries it
SELECT wsnotify_invoke('c2', '{"action": "track", "topic": "room:1", "state": {"away": true}}');
SELECT wsnotify_disconnect('c2');
SELECT wsnotify_invoke('c1', '{"action": "track", "topic": "room:1", "state": null}');
UPDATE websocket_presence_leaving SET left_at = now() - interval '1 minute';
SELECT wsnotify_publish_leaves() AS leaves;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message WHERE body ->> 'presence' IN ('update', 'leave') ORDER BY id;

-- refresh: the same user's new token moves the expiry and replaces the claims
SELECT wsnotify_invoke('c1', '{"action": "refresh", "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEzMzk4MDgwMCwicm9sZSI6ImFkbWluIn0.ZBAWZzv9YRTUnqQbMRiCaJA2JTrXfWv-cSpsIa4F088"}');
SELECT claims ->> 'role' AS role, expires_at AT TIME ZONE 'UTC' AS expires_utc
FROM websocket_client WHERE connection_id = 'c1';
-- another user's token, an expired one, garbage, none: refused, nothing changes
SELECT wsnotify_invoke('c1', '{"action": "refresh", "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IiLCJleHAiOjQxMzM5ODA4MDB9.dJLuthOC-jvC6pWfErfEEP0YP5ljsEoLZLq8y98J7yM"}');
SELECT wsnotify_invoke('c1', '{"action": "refresh", "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTc4MzA3MjAwfQ.q9LQCUyXYYzJ2DX9asQiFOmt5nwjesDAg2LfqMNE3Fc"}');
SELECT wsnotify_invoke('c1', '{"action": "refresh", "token": "nope"}');
SELECT wsnotify_invoke('c1', '{"action": "refresh"}');
SELECT claims ->> 'role' AS role, expires_at AT TIME ZONE 'UTC' AS expires_utc
FROM websocket_client WHERE connection_id = 'c1';

DROP FUNCTION allow_signals(jsonb, jsonb) CASCADE;
DROP EXTENSION wsnotify;
