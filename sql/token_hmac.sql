-- verify_token with HS256/384/512: the configured secret and the explicit
-- key form; a wrong secret, a changed payload or a missing signature never
-- verify.  Tokens: test/fixtures/mint_tokens.py (python3-jwt).
CREATE EXTENSION IF NOT EXISTS wsnotify;
\set ECHO none
\i test/fixtures/tokens.psql
\i test/fixtures/token_helpers.psql
\set ECHO all

SET wsnotify.jwt_secret = :'secret';
SET wsnotify.jwt_algorithms = 'HS256, HS384, HS512';

-- each HMAC algorithm verifies and returns the claims
SELECT verify_token(:'tok_hs256');
SELECT verify_token(:'tok_hs384');
SELECT verify_token(:'tok_hs512');

-- the explicit key form, with and without the configured secret
SELECT verify_token(:'tok_hs384', :'secret', 'HS384');
RESET wsnotify.jwt_secret;
SELECT verify_token(:'tok_hs256', :'secret', 'HS256');
SELECT pg_temp.check_token(:'tok_hs256') AS no_secret;
SET wsnotify.jwt_secret = :'secret';

-- signatures that must not verify
SELECT pg_temp.check_token(:'tok_hs256_wrong_secret') AS wrong_secret;
SELECT pg_temp.check_token(:'tok_hs256_tampered') AS tampered;
SELECT pg_temp.check_token(:'tok_hs256_no_signature') AS no_signature;
SELECT pg_temp.check_token_with(:'tok_hs256', :'wrong_secret', 'HS256') AS wrong_key;
SELECT pg_temp.check_token_with(:'tok_hs256', '', 'HS256') AS empty_key;

-- an HS512 token is not an HS256 one
SELECT pg_temp.check_token_with(:'tok_hs512', :'secret', 'HS256') AS hs512_as_hs256;

-- only the listed algorithms
SET wsnotify.jwt_algorithms = 'HS256';
SELECT pg_temp.check_token(:'tok_hs384') AS hs384_not_listed;
SELECT pg_temp.check_token(:'tok_hs512') AS hs512_not_listed;
SELECT pg_temp.check_token(:'tok_hs256') AS hs256_listed;

-- the same behaviour with the SQLSTATE as psql shows it
\set VERBOSITY sqlstate
SELECT verify_token(:'tok_hs256_wrong_secret');
\set VERBOSITY default

-- repeated calls (freeing on every path) give the same answers
SELECT count(verify_token(:'tok_hs256')) FROM generate_series(1, 1000);
SELECT count(pg_temp.check_token(:'tok_hs256_wrong_secret')) FROM generate_series(1, 1000);

RESET wsnotify.jwt_algorithms;
RESET wsnotify.jwt_secret;
DROP EXTENSION wsnotify;
