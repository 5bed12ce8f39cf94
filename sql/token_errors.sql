-- verify_token's refusals for broken input: every one SQLSTATE 28000 (NULL
-- key or algorithm arguments: 22004) with its own reason, none holding the
-- token; and the wsnotify.jwt_algorithms check.
CREATE EXTENSION IF NOT EXISTS wsnotify;
\set ECHO none
\i test/fixtures/tokens.psql
\i test/fixtures/token_helpers.psql
\set ECHO all

SET wsnotify.jwt_secret = :'secret';

-- the leak check itself: a message holding a part of the token is caught
SELECT pg_temp.describe_refusal('abc.defghijkl.mno', NULL, '28000',
                                'x defghijkl y', NULL, NULL) AS leak_check_works;

-- NULL arguments
\set VERBOSITY sqlstate
SELECT verify_token(NULL);
SELECT verify_token(NULL, :'secret', 'HS256');
SELECT verify_token(:'tok_hs256', NULL, 'HS256');
SELECT verify_token(:'tok_hs256', :'secret', NULL);
\set VERBOSITY default
SELECT verify_token(NULL);
SELECT verify_token(:'tok_hs256', NULL, 'HS256');
SELECT verify_token(:'tok_hs256', :'secret', NULL);

-- malformed tokens
SELECT pg_temp.check_token('') AS empty;
SELECT pg_temp.check_token('not-a-token') AS no_dots;
SELECT pg_temp.check_token(:'tok_empty_parts') AS empty_parts;
SELECT pg_temp.check_token(:'tok_two_parts') AS two_parts;
SELECT pg_temp.check_token(:'tok_four_parts') AS four_parts;
SELECT pg_temp.check_token(:'tok_bad_base64') AS bad_base64;
SELECT pg_temp.check_token(:'tok_padded_base64') AS padded_base64;
SELECT pg_temp.check_token(:'tok_header_not_json') AS header_not_json;
SELECT pg_temp.check_token(:'tok_header_array') AS header_array;
SELECT pg_temp.check_token(:'tok_header_no_alg') AS header_no_alg;
SELECT pg_temp.check_token(:'tok_header_alg_number') AS header_alg_number;
SELECT pg_temp.check_token(:'tok_crit') AS crit;
SELECT pg_temp.check_token(:'tok_payload_not_json') AS payload_not_json;
SELECT pg_temp.check_token(:'tok_payload_array') AS payload_array;
SELECT pg_temp.check_token(:'tok_payload_duplicate') AS payload_duplicate;
-- jansson holds integers in 64 bits: a larger one makes the token malformed
SELECT pg_temp.check_token(:'tok_integer_over_int64') AS integer_over_int64;

-- alg none, signed or not, and unknown algorithms: never accepted
SELECT pg_temp.check_token(:'tok_none') AS alg_none;
SELECT pg_temp.check_token(:'tok_none_signed') AS alg_none_signed;
SELECT pg_temp.check_token(:'tok_unknown_alg') AS alg_unknown;
SELECT pg_temp.check_token_with(:'tok_none', '', 'none') AS none_explicit;
SELECT pg_temp.check_token_with(:'tok_none', :'secret', 'none') AS none_explicit_key;
-- a configured name may be in any case; the token's own alg may not
SELECT pg_temp.check_token_with(:'tok_hs256', :'secret', 'hs256') AS lower_case_alg;
SELECT pg_temp.check_token(:'tok_lower_case_alg') AS lower_case_header_alg;

-- the size cap comes before any parsing
SELECT length(:'tok_overlong') > 8192 AS overlong_is_over_8192;
SELECT pg_temp.check_token(:'tok_overlong') AS overlong;
SELECT pg_temp.check_token(repeat('x', 100000)) AS overlong_garbage;
SET wsnotify.jwt_max_length = 256;
SELECT length(:'tok_rs256') > 256 AS rs256_is_over_256;
SELECT pg_temp.check_token(:'tok_rs256') AS over_256;
SELECT pg_temp.check_token_with(:'tok_rs256', :'rsa_pub', 'RS256') AS over_256_explicit;
RESET wsnotify.jwt_max_length;
SET wsnotify.jwt_max_length = 16384;
SELECT verify_token(:'tok_overlong') ->> 'sub' AS overlong_under_raised_cap;
RESET wsnotify.jwt_max_length;

-- wsnotify.jwt_algorithms accepts only supported names (any case), never none
SET wsnotify.jwt_algorithms = 'none';
SET wsnotify.jwt_algorithms = 'HS256,none';
SET wsnotify.jwt_algorithms = '';
SET wsnotify.jwt_algorithms = 'HS256,,RS256';
SET wsnotify.jwt_algorithms = 'hs256';
SHOW wsnotify.jwt_algorithms;
SET wsnotify.jwt_algorithms = 'PS256';
SET wsnotify.jwt_algorithms = ' HS256 , RS256 ';
SHOW wsnotify.jwt_algorithms;
SET wsnotify.jwt_algorithms = HS512, ES384;
SHOW wsnotify.jwt_algorithms;
RESET wsnotify.jwt_algorithms;
SHOW wsnotify.jwt_algorithms;

RESET wsnotify.jwt_secret;
DROP EXTENSION wsnotify;
