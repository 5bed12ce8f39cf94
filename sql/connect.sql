-- wsnotify_connect: the upgrade's one round trip verifies the token and
-- records the connection; a refused token records nothing.
-- Tokens were minted with python3-jwt (HS256, the secret below), expiring
-- in 2100 or, for the expired one, in 2001.
CREATE EXTENSION wsnotify;
SET wsnotify.jwt_secret = 'connect-test-secret-0123456789abcdef';

SELECT send_ws('alice', '{"before": "connect"}');
SELECT wsnotify_order_barrier() AS ordered \gset

-- A valid token: the row, the user from sub, the claims, the expiry, and the
-- start cursor (the last message sent before the connection existed).
SELECT user_id, claims, expires_at AT TIME ZONE 'UTC' AS expires_utc, last_id
FROM wsnotify_connect('conn-1', 'bridge-1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwicm9sZSI6Im1lbWJlciJ9.iUzJttltOk4h4Ex1Yx9v0BjN_ENpA4QnfU8O7v3qZ48',
    '127.0.0.1', 'pytest/1.0');
SELECT connection_id, user_id, bridge_id, remote_addr, user_agent,
       claims ->> 'role' AS role, connected_at IS NOT NULL AS connected_at_set
FROM websocket_client;
SELECT send_ws('alice', '{"after": "connect"}') AS alice_connections;

-- An integer user claim becomes its decimal text.
SELECT user_id FROM wsnotify_connect('conn-2', 'bridge-1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjQyLCJleHAiOjQxMDI0NDQ4MDB9.CltJX0GoBHbFB2SLa0aRHAPWh-2N66F3bsbHWMMyj1g',
    NULL, NULL);

-- Refused tokens: SQLSTATE 28000, and no row.
\set VERBOSITY sqlstate
SELECT * FROM wsnotify_connect('conn-3', 'bridge-1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTc4MzA3MjAwfQ.q9LQCUyXYYzJ2DX9asQiFOmt5nwjesDAg2LfqMNE3Fc',
    NULL, NULL);
SELECT * FROM wsnotify_connect('conn-4', 'bridge-1', 'not-a-token', NULL, NULL);
SELECT * FROM wsnotify_connect('conn-5', 'bridge-1', NULL, NULL, NULL);
-- A connection id in use is refused too.
SELECT * FROM wsnotify_connect('conn-1', 'bridge-1',
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjQyLCJleHAiOjQxMDI0NDQ4MDB9.CltJX0GoBHbFB2SLa0aRHAPWh-2N66F3bsbHWMMyj1g',
    NULL, NULL);
SELECT * FROM wsnotify_connect(NULL, 'bridge-1', 'x', NULL, NULL);
\set VERBOSITY default
SELECT connection_id FROM websocket_client ORDER BY 1;

RESET wsnotify.jwt_secret;
DROP EXTENSION wsnotify;
