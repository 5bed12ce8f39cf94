-- verify_token with RS256/384/512 and ES256/384/512, and no algorithm
-- confusion: HS* never verifies with a public key, RS* only with an RSA
-- key, ES* only with an EC key of its own curve.
CREATE EXTENSION IF NOT EXISTS wsnotify;
\set ECHO none
\i test/fixtures/tokens.psql
\i test/fixtures/token_helpers.psql
\set ECHO all

SET wsnotify.jwt_algorithms = 'RS256,RS384,RS512,ES256,ES384,ES512';

-- RSA with the configured public key
SET wsnotify.jwt_public_key = :'rsa_pub';
SELECT verify_token(:'tok_rs256');
SELECT verify_token(:'tok_rs384');
SELECT verify_token(:'tok_rs512');
SELECT pg_temp.check_token(:'tok_rs256_wrong_key') AS rs256_wrong_key;
SELECT pg_temp.check_token(:'tok_rs256_tampered') AS rs256_tampered;
-- an ES token against the RSA key
SELECT pg_temp.check_token(:'tok_es256') AS es256_with_rsa_key;

-- EC with the configured public key of each curve
SET wsnotify.jwt_public_key = :'ec256_pub';
SELECT verify_token(:'tok_es256');
SELECT pg_temp.check_token(:'tok_es256_tampered') AS es256_tampered;
SELECT pg_temp.check_token(:'tok_es384') AS es384_with_p256_key;
SELECT pg_temp.check_token(:'tok_rs256') AS rs256_with_ec_key;
SET wsnotify.jwt_public_key = :'ec384_pub';
SELECT verify_token(:'tok_es384');
-- ES256 signed with a P-384 key: the curve does not fit ES256
SELECT pg_temp.check_token(:'tok_es256_p384_key') AS es256_p384_key;
SET wsnotify.jwt_public_key = :'ec521_pub';
SELECT verify_token(:'tok_es512');

-- the explicit key form
SELECT verify_token(:'tok_rs256', :'rsa_pub', 'RS256') ->> 'sub' AS rs256;
SELECT verify_token(:'tok_es384', :'ec384_pub', 'ES384') ->> 'sub' AS es384;
SELECT verify_token(:'tok_es512', :'ec521_pub', 'ES512') ->> 'sub' AS es512;
SELECT pg_temp.check_token_with(:'tok_rs256', :'rsa_wrong_pub', 'RS256') AS wrong_key;
SELECT pg_temp.check_token_with(:'tok_rs256', :'rsa_pub', 'RS512') AS other_alg;
SELECT pg_temp.check_token_with(:'tok_es256_p384_key', :'ec384_pub', 'ES256') AS es256_p384_key;
SELECT pg_temp.check_token_with(:'tok_es256', :'rsa_pub', 'ES256') AS es256_rsa_key;
-- a private key or garbage is not a public key, and is never echoed
SELECT pg_temp.check_token_with(:'tok_rs256', :'rsa_private', 'RS256') AS private_key;
SELECT pg_temp.check_token_with(:'tok_rs256', 'not a key', 'RS256') AS garbage_key;

-- a bad configured key is a configuration error with a hint
SET wsnotify.jwt_public_key = 'not a pem';
SELECT pg_temp.check_token(:'tok_rs256') AS bad_configured_key;
RESET wsnotify.jwt_public_key;
SELECT pg_temp.check_token(:'tok_rs256') AS no_public_key;

-- algorithm confusion: an HS256 token whose HMAC key is the RSA public
-- key's PEM text.  With HS256 allowed it is checked against
-- wsnotify.jwt_secret only, never against the public key.
SET wsnotify.jwt_algorithms = 'HS256,RS256';
SET wsnotify.jwt_public_key = :'rsa_pub';
SELECT pg_temp.check_token(:'tok_hs256_pem_secret') AS confusion_no_secret;
SET wsnotify.jwt_secret = :'secret';
SELECT pg_temp.check_token(:'tok_hs256_pem_secret') AS confusion_with_secret;
SELECT pg_temp.check_token_with(:'tok_hs256_pem_secret', :'rsa_pub', 'RS256') AS confusion_rs256;
SELECT pg_temp.check_token_with(:'tok_hs256_pem_secret', :'rsa_pub', 'HS256') AS confusion_pem_as_secret;
-- a PEM text configured as the secret is refused too
SET wsnotify.jwt_secret = :'rsa_pub';
SELECT pg_temp.check_token(:'tok_hs256_pem_secret') AS pem_configured_as_secret;
RESET wsnotify.jwt_secret;

-- RS256 when only HS256 is allowed
SET wsnotify.jwt_algorithms = 'HS256';
SELECT pg_temp.check_token(:'tok_rs256') AS rs256_not_allowed;
SELECT pg_temp.check_token(:'tok_es256') AS es256_not_allowed;

-- repeated calls, refused ones included, give the same answers
SET wsnotify.jwt_algorithms = 'RS256,ES256';
SELECT count(verify_token(:'tok_rs256')) FROM generate_series(1, 200);
SELECT count(pg_temp.check_token(:'tok_es256')) FROM generate_series(1, 200);
SET wsnotify.jwt_public_key = :'ec256_pub';
SELECT count(verify_token(:'tok_es256')) FROM generate_series(1, 200);

RESET wsnotify.jwt_public_key;
RESET wsnotify.jwt_algorithms;
DROP EXTENSION wsnotify;
