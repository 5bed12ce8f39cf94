-- wsnotify.jwt_jwks: a key set whose "kid" picks the key and whose "kty"
-- ("alg", "crv", "use") pins what each key verifies; tokens from
-- test/fixtures/mint_jwks.py (python3-jwt).  Every refusal is checked for
-- leaks: no key material, token or part of one in message, detail or hint.
CREATE EXTENSION wsnotify;
\set ECHO none
\i test/fixtures/tokens.psql
\i test/fixtures/jwks.psql
\i test/fixtures/token_helpers.psql
-- With the set given: 'accepted' (and the user), or the refusal; 'LEAK ...'
-- when the report holds the token, a part of it, or any string of the set.
CREATE FUNCTION pg_temp.jwks_check(tok text, jwks text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text; report text; piece text;
BEGIN
    PERFORM set_config('wsnotify.jwt_jwks', jwks, true);
    RETURN 'accepted: ' || (verify_token(tok) ->> 'sub');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    report := concat_ws(' | ', msg, nullif(det, ''), nullif(hnt, ''));
    FOREACH piece IN ARRAY ARRAY[tok] || string_to_array(tok, '.')
            || regexp_split_to_array(jwks, '"') LOOP
        IF length(piece) >= 8 AND strpos(report, piece) > 0
           AND piece NOT IN ('wsnotify.jwt_jwks') THEN
            RETURN 'LEAK in ' || st || ': ' || msg;
        END IF;
    END LOOP;
    RETURN st || ': ' || report;
END
$$;
\set ECHO all

SET wsnotify.jwt_algorithms = 'HS256,HS384,HS512,RS256,RS384,RS512,ES256,ES384,ES512';
SET wsnotify.jwt_secret = '';
SET wsnotify.jwt_public_key = '';

-- Each key type, picked by kid, in a set of nine keys.
BEGIN;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_all') AS rs256_rsa_1;
SELECT pg_temp.jwks_check(:'jtok_rs384', :'jwks_all') AS rs384_rsa_1;
SELECT pg_temp.jwks_check(:'jtok_rs256_rsa2', :'jwks_all') AS rs256_rsa_2;
SELECT pg_temp.jwks_check(:'jtok_es256', :'jwks_all') AS es256;
SELECT pg_temp.jwks_check(:'jtok_es384', :'jwks_all') AS es384;
SELECT pg_temp.jwks_check(:'jtok_es512', :'jwks_all') AS es512;
SELECT pg_temp.jwks_check(:'jtok_hs256', :'jwks_all') AS hs256_oct;
SELECT pg_temp.jwks_check(:'jtok_hs512', :'jwks_all') AS hs512_oct;
SELECT pg_temp.jwks_check(:'jtok_hs256_pinned', :'jwks_all') AS hs256_oct_alg_hs256;

-- Key type confusion: the kid names a key of another type or curve.
SELECT pg_temp.jwks_check(:'jtok_hs256_kid_rsa', :'jwks_all') AS hs256_naming_rsa_key;
SELECT pg_temp.jwks_check(:'jtok_rs256_kid_oct', :'jwks_all') AS rs256_naming_oct_key;
SELECT pg_temp.jwks_check(:'jtok_es256_kid_p384', :'jwks_all') AS es256_naming_p384_key;
SELECT pg_temp.jwks_check(:'jtok_es384_kid_p256', :'jwks_all') AS es384_naming_p256_key;
SELECT pg_temp.jwks_check(:'jtok_es256_kid_rsa', :'jwks_all') AS es256_naming_rsa_key;
-- a key's "alg" pins it: rsa-2 is RS256 only, oct-256 HS256 only
SELECT pg_temp.jwks_check(:'jtok_rs384_rsa2', :'jwks_all') AS rs384_naming_rs256_key;
SELECT pg_temp.jwks_check(:'jtok_hs384_pinned', :'jwks_all') AS hs384_naming_hs256_key;
-- keys of other types, or not for signatures, verify nothing
SELECT pg_temp.jwks_check(:'jtok_rs256_okp_kid', :'jwks_all') AS rs256_naming_okp_key;
SELECT pg_temp.jwks_check(:'jtok_rs256_enc_kid', :'jwks_all') AS rs256_naming_enc_key;

-- Unknown kid, wrong signature, kid not a string.
SELECT pg_temp.jwks_check(:'jtok_rs256_unknown_kid', :'jwks_all') AS unknown_kid;
SELECT pg_temp.jwks_check(:'jtok_rs256_wrong_key', :'jwks_all') AS wrong_key_for_kid;
SELECT pg_temp.jwks_check(:'jtok_kid_number', :'jwks_all') AS kid_not_a_string;

-- No kid: refused when several keys could verify; the only one is used.
SELECT pg_temp.jwks_check(:'jtok_rs256_no_kid', :'jwks_two_rsa') AS no_kid_two_rsa_keys;
SELECT pg_temp.jwks_check(:'jtok_rs256_no_kid', :'jwks_all') AS no_kid_rsa_1_and_rsa_2;
SELECT pg_temp.jwks_check(:'jtok_rs256_no_kid', :'jwks_one_rsa') AS no_kid_one_rsa_key;
SELECT pg_temp.jwks_check(:'jtok_hs256_no_kid', :'jwks_one_oct') AS no_kid_one_oct_key;
COMMIT;

-- The single-key settings keep working alongside a set.
SET wsnotify.jwt_secret = :'secret';
SET wsnotify.jwt_jwks = :'jwks_one_rsa';
SELECT verify_token(:'tok_hs256') ->> 'sub' AS hs256_secret_beside_rsa_set;
SET wsnotify.jwt_jwks = :'jwks_one_oct';
-- an oct key and the secret could both verify a token without kid
SELECT pg_temp.check_token(:'tok_hs256') AS no_kid_oct_key_and_secret;
SELECT pg_temp.check_token(:'jtok_hs256') AS kid_picks_oct_key_beside_secret;
SET wsnotify.jwt_secret = '';
SET wsnotify.jwt_public_key = :'rsa_pub';
SET wsnotify.jwt_jwks = :'jwks_one_rsa';
SELECT pg_temp.check_token(:'jtok_rs256_no_kid') AS no_kid_rsa_key_and_public_key;
SET wsnotify.jwt_public_key = :'ec256_pub';
SELECT pg_temp.check_token(:'jtok_rs256_no_kid') AS no_kid_rsa_key_beside_ec_public_key;
-- with a set, a kid must name one of its keys, even if the single key fits
SET wsnotify.jwt_public_key = :'rsa_pub';
SELECT pg_temp.check_token(:'jtok_rs256_unknown_kid') AS unknown_kid_beside_public_key;
-- without a set, kids are ignored as before
SET wsnotify.jwt_jwks = '';
SELECT pg_temp.check_token(:'jtok_rs256_unknown_kid') AS kid_ignored_without_set;
SET wsnotify.jwt_public_key = '';

-- The three-argument form never looks at the set.
SET wsnotify.jwt_jwks = :'jwks_all';
SELECT pg_temp.check_token_with(:'jtok_rs256', :'rsa_pub', 'RS256') AS explicit_key;
SELECT pg_temp.check_token_with(:'jtok_rs256_rsa2', :'rsa_pub', 'RS256') AS explicit_key_only;

-- The set is parsed once per text: the cached keys follow the setting.
SET wsnotify.jwt_jwks = :'jwks_one_rsa';
SELECT pg_temp.check_token(:'jtok_rs256') AS rsa_1_in_set;
SELECT pg_temp.check_token(:'jtok_rs256_rsa2') AS rsa_2_not_in_set;
SET wsnotify.jwt_jwks = :'jwks_two_rsa';
SELECT pg_temp.check_token(:'jtok_rs256_rsa2') AS rsa_2_added;
SET wsnotify.jwt_jwks = :'jwks_one_rsa';
SELECT pg_temp.check_token(:'jtok_rs256_rsa2') AS rsa_2_removed;
RESET wsnotify.jwt_jwks;

-- Invalid sets: a clear refusal that names the key by position, never its
-- material.
BEGIN;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_json') AS bad_json;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_no_keys') AS no_keys_array;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_no_kty') AS no_kty;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_rsa_no_n') AS rsa_without_n;
SELECT pg_temp.jwks_check(:'jtok_es256', :'jwks_bad_ec_crv') AS ec_unknown_curve;
SELECT pg_temp.jwks_check(:'jtok_es256', :'jwks_bad_ec_point') AS ec_point_off_curve;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_private') AS rsa_private_key;
SELECT pg_temp.jwks_check(:'jtok_hs256', :'jwks_bad_oct_empty') AS oct_empty;
SELECT pg_temp.jwks_check(:'jtok_hs256', :'jwks_bad_base64') AS oct_bad_base64;
-- one base64url rule for tokens and key sets (RFC 7515 section 2, RFC 7517):
-- unpadded, and no stray bits after the last byte, so each key has one
-- spelling; the set's own oct-1 key spelt both ways is refused as a token's
-- part would be
SELECT pg_temp.jwks_check(:'jtok_hs256', replace(:'jwks_one_oct', 'Y2RlZg"', 'Y2RlZg=="'))
       AS oct_padded_refused;
SELECT pg_temp.jwks_check(:'jtok_hs256', replace(:'jwks_one_oct', 'Y2RlZg"', 'Y2RlZh"'))
       AS oct_stray_bits_refused;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_duplicate_kid') AS duplicate_kid;
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_bad_short_rsa') AS rsa_1024_bits;
SELECT pg_temp.jwks_check(:'jtok_rs256', '[]') AS not_an_object;
SELECT pg_temp.jwks_check(:'jtok_rs256', '{"keys": [1]}') AS key_not_an_object;
-- a broken set does not stop the next good one
SELECT pg_temp.jwks_check(:'jtok_rs256', :'jwks_all') AS good_again;
COMMIT;

-- The set is a secret: masked, and refused per role or database.
SET wsnotify.jwt_jwks = :'jwks_one_oct';
CREATE ROLE wsnotify_jwks_reader;
SET ROLE wsnotify_jwks_reader;
SHOW wsnotify.jwt_jwks;
RESET ROLE;
ALTER ROLE wsnotify_jwks_reader SET wsnotify.jwt_jwks = '{"keys": []}';
DROP ROLE wsnotify_jwks_reader;

RESET wsnotify.jwt_jwks;
RESET wsnotify.jwt_secret;
RESET wsnotify.jwt_public_key;
RESET wsnotify.jwt_algorithms;
DROP EXTENSION wsnotify;
