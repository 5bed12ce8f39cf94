-- verify_token's claim rules: exp and nbf with wsnotify.jwt_leeway, aud and
-- iss when configured, the user claim named by wsnotify.user_claim, and the
-- claims returned as they were written.
CREATE EXTENSION IF NOT EXISTS wsnotify;
\set ECHO none
\i test/fixtures/tokens.psql
\i test/fixtures/token_helpers.psql
\set ECHO all

SET wsnotify.jwt_secret = :'secret';

-- exp and nbf
SELECT pg_temp.check_token(:'tok_expired') AS expired;
SELECT pg_temp.check_token(:'tok_not_yet_valid') AS not_yet_valid;
SELECT pg_temp.check_token(:'tok_nbf_past') AS nbf_past;
SELECT pg_temp.check_token(:'tok_no_exp') AS no_exp;
SELECT pg_temp.check_token(:'tok_exp_string') AS exp_string;
SELECT pg_temp.check_token(:'tok_nbf_string') AS nbf_string;
-- the maximum leeway does not revive a token that expired in 2001
SET wsnotify.jwt_leeway = 3600;
SELECT pg_temp.check_token(:'tok_expired') AS expired_max_leeway;
RESET wsnotify.jwt_leeway;

-- Tokens relative to now, minted here with pgcrypto's hmac (independent of
-- the extension's OpenSSL HMAC code): exp 10 s ago, nbf 10 s ahead.
CREATE EXTENSION pgcrypto;
CREATE FUNCTION pg_temp.b64url(b bytea) RETURNS text LANGUAGE sql AS
$$ SELECT translate(rtrim(replace(encode(b, 'base64'), E'\n', ''), '='), '+/', '-_') $$;
CREATE FUNCTION pg_temp.mint(claims jsonb, secret text) RETURNS text LANGUAGE sql AS
$$ SELECT s || '.' || pg_temp.b64url(hmac(convert_to(s, 'UTF8'), convert_to(secret, 'UTF8'), 'sha256'))
   FROM (SELECT pg_temp.b64url(convert_to('{"alg":"HS256","typ":"JWT"}', 'UTF8')) || '.' ||
                pg_temp.b64url(convert_to(claims::text, 'UTF8')) AS s) AS signing $$;
SELECT pg_temp.mint(jsonb_build_object('sub', 'alice',
           'exp', extract(epoch FROM now())::bigint - 10), :'secret') AS tok_exp_recent \gset
SELECT pg_temp.mint(jsonb_build_object('sub', 'alice',
           'nbf', extract(epoch FROM now())::bigint + 10), :'secret') AS tok_nbf_soon \gset
-- within the default leeway of 30 s: accepted
SELECT pg_temp.check_token(:'tok_exp_recent') AS exp_within_leeway;
SELECT pg_temp.check_token(:'tok_nbf_soon') AS nbf_within_leeway;
-- without leeway: refused (details hold the current time, so not shown)
SET wsnotify.jwt_leeway = 0;
SELECT split_part(pg_temp.check_token(:'tok_exp_recent'), ' | ', 1) AS exp_no_leeway;
SELECT split_part(pg_temp.check_token(:'tok_nbf_soon'), ' | ', 1) AS nbf_no_leeway;
RESET wsnotify.jwt_leeway;
DROP EXTENSION pgcrypto;

-- aud: any when unset; a string or an array holding it when set
SELECT pg_temp.check_token(:'tok_aud_wrong') AS aud_unchecked;
SET wsnotify.jwt_audience = 'wsnotify';
SELECT pg_temp.check_token(:'tok_aud_string') AS aud_string;
SELECT pg_temp.check_token(:'tok_aud_array') AS aud_array;
SELECT pg_temp.check_token(:'tok_aud_wrong') AS aud_wrong;
SELECT pg_temp.check_token(:'tok_aud_array_wrong') AS aud_array_wrong;
SELECT pg_temp.check_token(:'tok_aud_number') AS aud_number;
SELECT pg_temp.check_token(:'tok_hs256') AS aud_missing;
RESET wsnotify.jwt_audience;

-- iss: any when unset; equal when set
SELECT pg_temp.check_token(:'tok_iss_wrong') AS iss_unchecked;
SET wsnotify.jwt_issuer = 'https://auth.example.com';
SELECT pg_temp.check_token(:'tok_iss_good') AS iss_good;
SELECT pg_temp.check_token(:'tok_iss_wrong') AS iss_wrong;
SELECT pg_temp.check_token(:'tok_hs256') AS iss_missing;
RESET wsnotify.jwt_issuer;

-- the user claim: a non-empty string or an integer
SELECT pg_temp.check_token(:'tok_no_sub') AS no_sub;
SELECT verify_token(:'tok_sub_integer') AS sub_integer;
SELECT pg_temp.check_token(:'tok_sub_float') AS sub_float;
SELECT pg_temp.check_token(:'tok_sub_empty') AS sub_empty;
SELECT pg_temp.check_token(:'tok_sub_object') AS sub_object;
SELECT pg_temp.check_token(:'tok_sub_null') AS sub_null;
-- the article's tokens name the user "identity"
SELECT pg_temp.check_token(:'tok_identity') AS identity_with_sub_claim;
SET wsnotify.user_claim = 'identity';
SELECT verify_token(:'tok_identity');
SELECT pg_temp.check_token(:'tok_hs256') AS sub_with_identity_claim;
RESET wsnotify.user_claim;

-- the claims come back as written: numbers exact, non-ASCII text intact
SELECT verify_token(:'tok_rich_claims');
SELECT verify_token(:'tok_rich_claims') ->> 'big' AS big,
       verify_token(:'tok_rich_claims') ->> 'name' = 'Zoë' AS name_intact;

RESET wsnotify.jwt_secret;
DROP EXTENSION wsnotify;
