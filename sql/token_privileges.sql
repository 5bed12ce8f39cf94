-- The secret is invisible to non-superusers (SHOW, current_setting,
-- pg_settings), members of pg_read_all_settings included, and an ordinary
-- role can still verify tokens with it.
CREATE EXTENSION IF NOT EXISTS wsnotify;
\set ECHO none
\i test/fixtures/tokens.psql
\i test/fixtures/token_helpers.psql
\set ECHO all

CREATE ROLE wsnotify_token_app;
CREATE ROLE wsnotify_token_reader;
GRANT pg_read_all_settings TO wsnotify_token_reader;

SET wsnotify.jwt_secret = :'secret';
SET wsnotify.jwt_public_key = :'rsa_pub';
SET wsnotify.jwt_algorithms = 'HS256,RS256';

-- the superuser sees it
SELECT current_setting('wsnotify.jwt_secret') = :'secret' AS superuser_sees_secret;

-- an ordinary role: refused or masked everywhere
SET ROLE wsnotify_token_app;
SHOW wsnotify.jwt_secret;
SELECT current_setting('wsnotify.jwt_secret');
SELECT current_setting('wsnotify.jwt_secret', true);
SELECT name, setting FROM pg_settings WHERE name = 'wsnotify.jwt_secret';
SELECT count(*) AS rows_holding_secret
FROM pg_settings WHERE setting LIKE '%' || :'secret' || '%';
SELECT count(*) AS show_all_holding_secret
FROM pg_show_all_settings() WHERE setting LIKE '%' || :'secret' || '%';
-- nor can it change the secret or the rules
SET wsnotify.jwt_secret = 'mine';
SET wsnotify.jwt_algorithms = 'HS256,RS256,ES256';
-- but it verifies tokens with it, and its refusals do not leak it
SELECT verify_token(:'tok_hs256') ->> 'sub' AS app_verifies_hs256;
SELECT verify_token(:'tok_rs256') ->> 'sub' AS app_verifies_rs256;
SELECT pg_temp.check_token(:'tok_hs256_wrong_secret') AS app_wrong_secret;
RESET ROLE;

-- a member of pg_read_all_settings sees only a mask
SET ROLE wsnotify_token_reader;
SHOW wsnotify.jwt_secret;
SELECT current_setting('wsnotify.jwt_secret');
SELECT name, setting FROM pg_settings WHERE name = 'wsnotify.jwt_secret';
SELECT count(*) AS rows_holding_secret
FROM pg_settings WHERE setting LIKE '%' || :'secret' || '%';
RESET ROLE;

-- secrets cannot be stored where every role can read them: per role and per
-- database settings live in pg_db_role_setting, a function's SET in pg_proc
ALTER ROLE wsnotify_token_app SET wsnotify.jwt_secret = 'per-role-secret';
ALTER DATABASE contrib_regression SET wsnotify.jwt_secret = 'per-db-secret';
CREATE FUNCTION leaky() RETURNS int LANGUAGE sql
    SET wsnotify.jwt_secret = 'per-function-secret' AS 'SELECT 1';
ALTER ROLE wsnotify_token_app SET wsnotify.jwt_jwks = '{"keys": []}';
SELECT count(*) AS stored_secrets FROM pg_db_role_setting
WHERE array_to_string(setconfig, ',') LIKE '%wsnotify.jwt%';
-- settings that are not secret may be per role as DESIGN.md promises
ALTER ROLE wsnotify_token_app SET wsnotify.jwt_audience = 'app';
ALTER ROLE wsnotify_token_app RESET wsnotify.jwt_audience;

RESET wsnotify.jwt_secret;
RESET wsnotify.jwt_public_key;
RESET wsnotify.jwt_algorithms;
DROP ROLE wsnotify_token_app;
DROP ROLE wsnotify_token_reader;
DROP EXTENSION wsnotify;
