-- Routes: ws_route/ws_unroute, running handlers for client messages with the
-- connection's context, $connect (refusal, welcome) and $disconnect.
CREATE EXTENSION wsnotify;
SET wsnotify.jwt_secret = 'connect-test-secret-0123456789abcdef';
INSERT INTO websocket_client (connection_id, user_id, bridge_id, claims)
VALUES ('c-alice', 'alice', 'b1', '{"sub": "alice", "plan": "pro"}'),
       ('c-bob', 'bob', 'b1', '{"sub": "bob"}');

CREATE FUNCTION echo(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('echo', message -> 'text',
                              'connection', connection ->> 'connection_id',
                              'user_id', current_setting('wsnotify.user_id'),
                              'plan', current_setting('wsnotify.claims')::jsonb ->> 'plan',
                              'conn_setting', current_setting('wsnotify.connection_id'))
$$;
CREATE FUNCTION fallback(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('fallback', message) $$;
CREATE FUNCTION silent(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION refuse(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'not today, %', connection ->> 'user_id'; END $$;
CREATE FUNCTION wrong_args(x int) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION wrong_result(connection jsonb, message jsonb) RETURNS text
LANGUAGE sql AS $$ SELECT 'x' $$;

-- Registering: the signature is checked, with the expected one in the error.
SELECT ws_route('echo', 'echo(jsonb,jsonb)');
SELECT ws_route('nothing', 'silent(jsonb,jsonb)');
SELECT ws_route('bad', 'wrong_args(int)');
SELECT ws_route('bad', 'wrong_result(jsonb,jsonb)');
SELECT ws_route('bad name', 'echo(jsonb,jsonb)');
SELECT ws_route('', 'echo(jsonb,jsonb)');
SELECT ws_route('$nope', 'echo(jsonb,jsonb)');
SELECT ws_route('subscribe', 'echo(jsonb,jsonb)');
SELECT ws_route(NULL, 'echo(jsonb,jsonb)');
SELECT route, handler, run_as FROM websocket_route ORDER BY route;

-- A client message runs its action's handler with the connection's context.
SELECT wsnotify_invoke('c-alice', '{"action": "echo", "text": "hi"}');
SELECT wsnotify_invoke('c-bob', '{"action": "echo", "text": "yo"}');
-- The context lasts for that transaction only.
SELECT current_setting('wsnotify.user_id') AS user_id_after;
-- NULL from the handler: no reply.
SELECT wsnotify_invoke('c-alice', '{"action": "nothing"}') IS NULL AS no_reply;

-- No route and no $default: 42883. Then $default takes what has no route,
-- what is not an object, and actions naming the special routes.
\set VERBOSITY sqlstate
SELECT wsnotify_invoke('c-alice', '{"action": "missing"}');
\set VERBOSITY default
SELECT wsnotify_invoke('c-alice', '{"action": "missing"}');
SELECT ws_route('$default', 'fallback(jsonb,jsonb)');
SELECT wsnotify_invoke('c-alice', '{"action": "missing"}');
SELECT wsnotify_invoke('c-alice', '[1, 2]');
SELECT wsnotify_invoke('c-alice', '{"no_action": true}');
SELECT wsnotify_invoke('c-alice', '{"action": "$connect"}');
SELECT wsnotify_invoke('c-alice', '{"action": 42}');
-- A gone connection cannot run handlers.
SELECT wsnotify_invoke('c-gone', '{"action": "echo"}');

-- A handler's RAISE reaches the caller with its SQLSTATE class P0.
SELECT ws_route('refuse', 'refuse(jsonb,jsonb)');
\set VERBOSITY sqlstate
SELECT wsnotify_invoke('c-alice', '{"action": "refuse"}');
\set VERBOSITY default

-- Route changes are seen at once; a dropped handler is a clear error.
SELECT ws_unroute('nothing');
SELECT ws_unroute('nothing');
SELECT wsnotify_invoke('c-alice', '{"action": "nothing"}');
SELECT ws_route('gone', 'fallback(jsonb,jsonb)');
ALTER FUNCTION fallback(jsonb, jsonb) RENAME TO fallback_renamed;
SELECT wsnotify_invoke('c-alice', '{"action": "gone"}');
ALTER FUNCTION fallback_renamed(jsonb, jsonb) RENAME TO fallback;

-- Row-level security: a handler running as an unprivileged role sees only
-- the rows of the user whose message it answers.
CREATE ROLE wsnotify_test_handler;
CREATE TABLE notes (owner text NOT NULL, body text NOT NULL);
INSERT INTO notes VALUES ('alice', 'alice 1'), ('alice', 'alice 2'), ('bob', 'bob 1');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes
    USING (owner = current_setting('wsnotify.user_id'));
GRANT SELECT ON notes TO wsnotify_test_handler;
CREATE FUNCTION my_notes(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('role', current_user,
                              'notes', coalesce(jsonb_agg(body ORDER BY body), '[]'))
    FROM notes
$$;
GRANT EXECUTE ON FUNCTION my_notes(jsonb, jsonb) TO wsnotify_test_handler;
SELECT ws_route('my_notes', 'my_notes(jsonb,jsonb)', 'wsnotify_test_handler');
SELECT wsnotify_invoke('c-alice', '{"action": "my_notes"}');
SELECT wsnotify_invoke('c-bob', '{"action": "my_notes"}');

-- A handler cannot forge its context nor switch back to a privileged role.
CREATE FUNCTION forge(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('wsnotify.user_id', 'bob', true);
    RETURN '{}';
END $$;
GRANT EXECUTE ON FUNCTION forge(jsonb, jsonb) TO wsnotify_test_handler;
SELECT ws_route('forge', 'forge(jsonb,jsonb)', 'wsnotify_test_handler');
SELECT wsnotify_invoke('c-alice', '{"action": "forge"}');
CREATE FUNCTION escalate(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$ BEGIN RESET ROLE; RETURN '{}'; END $$;
GRANT EXECUTE ON FUNCTION escalate(jsonb, jsonb) TO wsnotify_test_handler;
SELECT ws_route('escalate', 'escalate(jsonb,jsonb)', 'wsnotify_test_handler');
SELECT wsnotify_invoke('c-alice', '{"action": "escalate"}');

-- Routes belong to the role that registered them; run_as needs membership.
CREATE ROLE wsnotify_test_app_a;
CREATE ROLE wsnotify_test_app_b;
GRANT EXECUTE ON FUNCTION echo(jsonb, jsonb) TO PUBLIC;
SET ROLE wsnotify_test_app_a;
SELECT ws_route('a_route', 'echo(jsonb,jsonb)');
SELECT ws_route('a_route2', 'echo(jsonb,jsonb)', 'wsnotify_test_handler');
RESET ROLE;
SET ROLE wsnotify_test_app_b;
SELECT ws_route('a_route', 'silent(jsonb,jsonb)');
SELECT ws_unroute('a_route');
INSERT INTO websocket_route VALUES ('x', 'echo(jsonb,jsonb)', 'wsnotify_test_app_b', 'wsnotify_test_app_b');
SET wsnotify.user_id = 'alice';
SELECT wsnotify_invoke('c-alice', '{"action": "echo"}');
RESET ROLE;
SELECT route, run_as, owner FROM websocket_route WHERE route = 'a_route';

-- $connect: its result is the welcome frame; its RAISE refuses with 42501
-- and the handler's message; anything else refuses without details.
CREATE FUNCTION welcome(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('welcome', connection ->> 'user_id') $$;
SELECT ws_route('$connect', 'welcome(jsonb,jsonb)');
SELECT user_id, welcome FROM wsnotify_connect('c-new', 'b1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwicm9sZSI6Im1lbWJlciJ9.iUzJttltOk4h4Ex1Yx9v0BjN_ENpA4QnfU8O7v3qZ48',
    NULL, NULL);
SELECT ws_route('$connect', 'refuse(jsonb,jsonb)');
SELECT * FROM wsnotify_connect('c-refused', 'b1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwicm9sZSI6Im1lbWJlciJ9.iUzJttltOk4h4Ex1Yx9v0BjN_ENpA4QnfU8O7v3qZ48',
    NULL, NULL);
CREATE FUNCTION broken(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT (1 / 0)::text::jsonb $$;
SELECT ws_route('$connect', 'broken(jsonb,jsonb)');
SELECT * FROM wsnotify_connect('c-broken', 'b1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwicm9sZSI6Im1lbWJlciJ9.iUzJttltOk4h4Ex1Yx9v0BjN_ENpA4QnfU8O7v3qZ48',
    NULL, NULL);
SELECT connection_id FROM websocket_client ORDER BY 1;
SELECT ws_unroute('$connect');

-- $disconnect runs after the row is gone; its failure changes nothing.
CREATE TABLE departures (connection_id text, user_id text, row_still_there boolean);
CREATE FUNCTION record_departure(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO departures
    SELECT connection ->> 'connection_id', connection ->> 'user_id',
           EXISTS (SELECT 1 FROM websocket_client
                   WHERE connection_id = connection ->> 'connection_id');
    SELECT NULL::jsonb
$$;
SELECT ws_route('$disconnect', 'record_departure(jsonb,jsonb)');
SELECT wsnotify_disconnect('c-new');
SELECT * FROM departures;
SELECT ws_route('$disconnect', 'refuse(jsonb,jsonb)');
SELECT wsnotify_disconnect('c-bob');
SELECT count(*) AS bob_rows FROM websocket_client WHERE connection_id = 'c-bob';

DROP TABLE notes, departures;
DROP EXTENSION wsnotify;
DROP FUNCTION echo(jsonb, jsonb), fallback(jsonb, jsonb), silent(jsonb, jsonb),
    refuse(jsonb, jsonb), wrong_args(int), wrong_result(jsonb, jsonb),
    my_notes(jsonb, jsonb), forge(jsonb, jsonb), escalate(jsonb, jsonb),
    welcome(jsonb, jsonb), broken(jsonb, jsonb), record_departure(jsonb, jsonb);
DROP ROLE wsnotify_test_handler, wsnotify_test_app_a, wsnotify_test_app_b;
