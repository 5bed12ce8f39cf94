-- wsnotify_restore: a bridge whose database connection came back puts back
-- the rows of its live connections that were reaped meanwhile, leaves rows
-- still present alone, and nobody else may call it.
CREATE EXTENSION wsnotify;

SELECT * FROM wsnotify_bridge_start('b1');
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('c1', 'alice', 'b1');

-- c1 is still there (left alone), c2 was reaped (put back), the entry
-- without a user is skipped.
SELECT wsnotify_restore('b1', '[
  {"connection_id": "c1", "user_id": "mallory"},
  {"connection_id": "c2", "user_id": "bob", "remote_addr": "10.0.0.2",
   "user_agent": "ua", "claims": {"sub": "bob"}, "expires_at": 4102444800,
   "connected_at": "2030-01-01T00:00:00Z"},
  {"connection_id": "c3"}
]') AS restored;
SELECT connection_id, user_id, bridge_id, remote_addr, user_agent, claims,
       expires_at = to_timestamp(4102444800) AS expires_ok,
       connected_at = '2030-01-01T00:00:00Z'::timestamptz AS connected_ok
FROM websocket_client ORDER BY connection_id;

-- The bridge is recorded as alive.
SELECT bridge_id FROM websocket_bridge;

-- An empty list restores nothing; NULL arguments return NULL (STRICT).
SELECT wsnotify_restore('b1', '[]') AS restored_none;
SELECT wsnotify_restore(NULL, '[]') IS NULL AS strict;

-- Only members of wsnotify_bridge may call it.
CREATE ROLE wsnotify_test_app;
SET ROLE wsnotify_test_app;
SELECT wsnotify_restore('b1', '[]');
RESET ROLE;
DROP ROLE wsnotify_test_app;

DROP EXTENSION wsnotify;
