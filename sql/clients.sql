-- The live-connection counts send_ws and send_ws_connection return come from
-- websocket_client's index (extension/clients.c): they must equal the
-- count(*) query's answer, in the index's collation, in the caller's
-- snapshot, and under row security the query itself answers.
CREATE EXTENSION wsnotify;

-- 2,000 connections of 400 users whose ids differ in case, accents and
-- length, so that a scan in the wrong collation would miss some.
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
SELECT 'c' || i,
       (ARRAY['al', 'Al', 'AL', 'ál', 'Ål', 'a l', 'al ', 'b', 'B', 'ß'])[1 + i % 10] || (i / 10 % 40),
       'b1'
FROM generate_series(1, 2000) i;
SELECT count(*) AS users,
       count(*) FILTER (WHERE sent = live) AS counts_matching
FROM (SELECT user_id, count(*) AS live, send_ws(user_id, '{"n": 1}') AS sent
      FROM websocket_client GROUP BY user_id) per_user;
-- The same where the index sorts otherwise than bytes (an ICU collation).
ALTER TABLE websocket_client ALTER COLUMN user_id TYPE text COLLATE "und-x-icu";
SELECT count(*) AS users,
       count(*) FILTER (WHERE sent = live) AS counts_matching
FROM (SELECT user_id, count(*) AS live, send_ws(user_id, '{"n": 1}') AS sent
      FROM websocket_client GROUP BY user_id) per_user;
-- An index in a case-insensitive collation is not the "=" of the query.
CREATE COLLATION clients_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE INDEX clients_user_ci ON websocket_client (user_id COLLATE clients_ci);
DROP INDEX websocket_client_user_id_idx;
SELECT send_ws('al1', '{}') AS al1, send_ws('AL1', '{}') AS "AL1";
DROP INDEX clients_user_ci;
DROP COLLATION clients_ci;
ALTER TABLE websocket_client ALTER COLUMN user_id TYPE text COLLATE "default";
CREATE INDEX websocket_client_user_id_idx ON websocket_client (user_id);

SELECT send_ws('nobody', '{}') AS nobody, send_ws('', '{}') AS empty_user;
SELECT send_ws_connection('c17', '{}') AS live, send_ws_connection('C17', '{}') AS other_case,
       close_ws('c18') AS closed_live, close_ws('c0') AS closed_gone;

-- The caller's own rows, not yet committed, count; a deleted one does not.
BEGIN;
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('new', 'newcomer', 'b1');
SELECT send_ws('newcomer', '{}') AS in_transaction;
DELETE FROM websocket_client WHERE connection_id = 'new';
SELECT send_ws('newcomer', '{}') AS after_delete;
ROLLBACK;

-- Under row security the count is what the caller may see.
CREATE ROLE clients_app;
GRANT USAGE ON SCHEMA public TO clients_app;
ALTER TABLE websocket_client ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_b ON websocket_client FOR SELECT USING (user_id LIKE 'b%');
SET ROLE clients_app;
SELECT send_ws('al1', '{}') AS al1_hidden, send_ws('b7', '{}') AS b7_visible;
RESET ROLE;
DROP POLICY only_b ON websocket_client;
ALTER TABLE websocket_client DISABLE ROW LEVEL SECURITY;

-- Without SELECT on the table the caller gets the query's error.
REVOKE SELECT ON websocket_client FROM PUBLIC;
SET ROLE clients_app;
SELECT send_ws('al1', '{}');
RESET ROLE;
GRANT SELECT ON websocket_client TO PUBLIC;

-- With the user_id index gone the query answers, and the same.
DROP INDEX websocket_client_user_id_idx;
SELECT send_ws('al1', '{}') AS al1_without_index,
       (SELECT count(*) FROM websocket_client WHERE user_id = 'al1') AS al1_query;

DROP EXTENSION wsnotify;
REVOKE USAGE ON SCHEMA public FROM clients_app;
DROP ROLE clients_app;
