/*-------------------------------------------------------------------------
 *
 * token.c
 *	  verify_token(): check a JSON Web Token (JWS compact form) and return
 *	  its claims as jsonb, or raise SQLSTATE 28000 with the reason.
 *
 * Order of checks, each failure a distinct message:
 *	 1. length against wsnotify.jwt_max_length, before any parsing;
 *	 2. structure: three base64url parts, a JSON object header with a
 *		string "alg", no "crit";
 *	 3. the algorithm: in wsnotify.jwt_algorithms (or equal to the
 *		algorithm given to the three-argument form); "none" never;
 *	 4. the key, chosen by the algorithm's family and never by the token:
 *		HS* only wsnotify.jwt_secret, RS* only an RSA public key, ES* only
 *		an EC public key on the algorithm's curve; or, from wsnotify.jwt_jwks
 *		(jwks.c), the key the token's "kid" names, whose type must fit;
 *	 5. the signature, all with OpenSSL: HMAC computed here and compared
 *		with CRYPTO_memcmp; RSA (PKCS#1 v1.5) and ECDSA with
 *		EVP_DigestVerify, the JWS R||S signature turned into DER first;
 *	 6. the claims: exp and nbf with wsnotify.jwt_leeway, iss and aud when
 *		configured, and the user claim named by wsnotify.user_claim.
 *
 * Why not libjwt: inside a backend its jwt_new() (hence every jwt_decode)
 * calls jansson's json_object(), which the dynamic linker binds to the
 * postgres executable's own json_object() SQL function: the backend
 * crashes.  Debian's libjwt 1.10 would also need care elsewhere: given no
 * key it verifies nothing, given a PEM text it accepts an HS256 token keyed
 * with that text, and it compares HMACs as base64 text with its own loop
 * rather than CRYPTO_memcmp.  See docs/tokens.md.
 *
 * jansson parses the header and the claims.  This file never calls its
 * json_object() (see above); the functions it does call bind inside
 * libjansson itself.
 *
 * Messages never contain the token, its parts, or any key.  Objects from
 * jansson and OpenSSL are freed on every path: before an ereport, or in a
 * PG_FINALLY where an ereport may come from deeper down.  The one exception
 * is deliberate: the last public key parsed stays cached for the backend's
 * life (decoding PEM costs more than verifying; see docs/tokens.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "base64url.h"
#include "jwks.h"
#include "wsnotify.h"

/*
 * utils/builtins.h cannot be included next to jansson.h (both declare
 * json_object), so the one built-in function used here is declared alone.
 */
extern Datum jsonb_in(PG_FUNCTION_ARGS);

/* The errcode of every refused token. */
#define TOKEN_ERRCODE ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION

/* Which kind of key an algorithm verifies with. */
typedef enum TokenFamily
{
	TOKEN_HMAC,
	TOKEN_RSA,
	TOKEN_EC
} TokenFamily;

/* One supported JWS algorithm. */
typedef struct TokenAlgorithm
{
	const char *name;
	TokenFamily family;
	const EVP_MD *(*digest) (void);
	int			curve_nid;		/* for TOKEN_EC: the curve it requires */
	const char *curve_name;		/* for messages */
} TokenAlgorithm;

/* The supported algorithms; "none" is deliberately absent. */
static const TokenAlgorithm token_algorithms[] = {
	{"HS256", TOKEN_HMAC, EVP_sha256, NID_undef, NULL},
	{"HS384", TOKEN_HMAC, EVP_sha384, NID_undef, NULL},
	{"HS512", TOKEN_HMAC, EVP_sha512, NID_undef, NULL},
	{"RS256", TOKEN_RSA, EVP_sha256, NID_undef, NULL},
	{"RS384", TOKEN_RSA, EVP_sha384, NID_undef, NULL},
	{"RS512", TOKEN_RSA, EVP_sha512, NID_undef, NULL},
	{"ES256", TOKEN_EC, EVP_sha256, NID_X9_62_prime256v1, "P-256"},
	{"ES384", TOKEN_EC, EVP_sha384, NID_secp384r1, "P-384"},
	{"ES512", TOKEN_EC, EVP_sha512, NID_secp521r1, "P-521"},
};

/* A token split into its parts; the decoded parts are palloc'd. */
typedef struct TokenParts
{
	const char *token;			/* the whole token, NUL-terminated */
	size_t		signed_len;		/* length of "header.payload" */
	char	   *header;			/* decoded header JSON */
	size_t		header_len;
	char	   *payload;		/* decoded payload JSON */
	size_t		payload_len;
	unsigned char *signature;	/* decoded signature */
	size_t		signature_len;
} TokenParts;

/* Where the key and the algorithm rules come from. */
typedef struct TokenKeySource
{
	const char *key;			/* NULL: the configured keys */
	const char *algorithm;		/* NULL: wsnotify.jwt_algorithms */
} TokenKeySource;

/*
 * The jansson trees of one verification, palloc'd so that PG_FINALLY sees
 * what was assigned before an error.
 */
typedef struct TokenTrees
{
	json_t	   *header;
	json_t	   *claims;
} TokenTrees;

/*---- GUC variables ----*/
static char *token_jwt_secret = NULL;
static char *token_jwt_public_key = NULL;
static char *token_jwt_jwks = NULL;
static char *token_jwt_algorithms = NULL;
static char *token_jwt_audience = NULL;
static char *token_jwt_issuer = NULL;
static int	token_jwt_leeway = 30;
static int	token_jwt_max_length = 8192;
static char *token_user_claim = NULL;

/*
 * wsnotify.jwt_algorithms parsed: bit i set when token_algorithms[i] is
 * accepted.  The check hook parses the list once per change, the assign
 * hook installs the result.
 */
static uint32 token_allowed = 0;

PG_FUNCTION_INFO_V1(verify_token);
PG_FUNCTION_INFO_V1(verify_token_with_key);

static const char *TokenShowSecret(void);
static const char *TokenShowJwks(void);
static bool TokenCheckAlgorithms(char **newval, void **extra, GucSource source);
static void TokenAssignAlgorithms(const char *newval, void *extra);
static bool TokenParseAlgorithms(const char *list, uint32 *mask,
								 char **bad_name);
static bool TokenCheckSecretSource(char **newval, void **extra,
								   GucSource source);
static Jsonb *TokenVerify(const char *token, const TokenKeySource *source);
static Jsonb *TokenVerifyParsed(TokenParts *parts, TokenTrees *trees,
								const TokenKeySource *source);
static void TokenCheckLength(const char *token);
static void TokenSplit(const char *token, TokenParts *parts);
static json_t *TokenParseJson(const char *json, size_t len, const char *what);
static const TokenAlgorithm *TokenHeaderAlgorithm(json_t *header,
												  const TokenKeySource *source);
static const TokenAlgorithm *TokenFindAlgorithm(const char *name, size_t len,
												bool exact);
static bool TokenAlgorithmAllowed(const TokenAlgorithm *alg);
static const char *TokenKeyFor(const TokenAlgorithm *alg,
							   const TokenKeySource *source);
static bool TokenJwksKey(json_t *header, const TokenAlgorithm *alg,
						 const TokenKeySource *source, JwksKey *out);
static void TokenVerifyHmac(const TokenParts *parts, const TokenAlgorithm *alg,
							const unsigned char *secret, size_t secret_len);
static EVP_PKEY *TokenParsePublicKey(const char *pem);
static EVP_PKEY *TokenLoadPublicKey(const TokenAlgorithm *alg, const char *pem,
									bool configured);
static bool TokenKeyFits(EVP_PKEY *pkey, const TokenAlgorithm *alg);
static unsigned char *TokenEcdsaToDer(const TokenParts *parts, EVP_PKEY *pkey,
									  int *der_len);
static bool TokenPublicSignatureValid(const TokenParts *parts,
									  const TokenAlgorithm *alg, EVP_PKEY *pkey);
static void TokenVerifyPublic(const TokenParts *parts, const TokenAlgorithm *alg,
							  const char *pem, bool configured);
static void TokenCheckTimes(json_t *claims);
static char *TokenFormatTime(double seconds);
static double TokenNumericClaim(json_t *claims, const char *name, bool *found);
static void TokenCheckIssuer(json_t *claims);
static bool TokenAudienceMatches(json_t *value);
static void TokenCheckAudience(json_t *claims);
static void TokenCheckUserClaim(json_t *claims);
static Jsonb *TokenClaimsToJsonb(const char *payload, size_t len);
static void TokenRefuseMalformed(const char *detail);
static char *TokenTextArg(FunctionCallInfo fcinfo, int argno);

/*
 * Define the settings that decide which tokens verify_token() accepts;
 * called once from _PG_init.
 *
 * Secrets (wsnotify.jwt_secret, wsnotify.jwt_jwks) are GUC_SUPERUSER_ONLY
 * and also masked by a show hook, so neither SHOW, current_setting() nor
 * pg_settings reveal them to anyone but a superuser, including members of
 * pg_read_all_settings.  A setting is only protected once this library has
 * defined it: before that it is a placeholder any role can read.  Hence the
 * documented setup is shared_preload_libraries, and verification from
 * configured keys refuses to run when the library was loaded late.
 */
void
TokenInit(void)
{
	DefineCustomStringVariable("wsnotify.jwt_secret",
							   "Shared secret for HS256/HS384/HS512 tokens.",
							   "Only superusers can read or set it.",
							   &token_jwt_secret, "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   TokenCheckSecretSource, NULL, TokenShowSecret);

	DefineCustomStringVariable("wsnotify.jwt_public_key",
							   "PEM public key (RSA or EC) for RS*/ES* tokens.",
							   NULL,
							   &token_jwt_public_key, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("wsnotify.jwt_jwks",
							   "JWKS document whose keys are picked by the token's kid.",
							   "Only superusers can read or set it: it may hold oct secrets.",
							   &token_jwt_jwks, "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   TokenCheckSecretSource, NULL, TokenShowJwks);

	DefineCustomStringVariable("wsnotify.jwt_algorithms",
							   "Comma-separated list of accepted JWT algorithms.",
							   "Any of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512; never none.",
							   &token_jwt_algorithms, "HS256",
							   PGC_SUSET, GUC_LIST_INPUT,
							   TokenCheckAlgorithms, TokenAssignAlgorithms, NULL);

	DefineCustomStringVariable("wsnotify.jwt_audience",
							   "Required aud claim; empty accepts any audience.",
							   NULL,
							   &token_jwt_audience, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("wsnotify.jwt_issuer",
							   "Required iss claim; empty accepts any issuer.",
							   NULL,
							   &token_jwt_issuer, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.jwt_leeway",
							"Clock skew tolerated when checking exp and nbf.",
							NULL,
							&token_jwt_leeway, 30, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.jwt_max_length",
							"Longest token accepted, in bytes.",
							NULL,
							&token_jwt_max_length, 8192, 256, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("wsnotify.user_claim",
							   "Claim that holds the user id (a string or an integer).",
							   NULL,
							   &token_user_claim, "sub",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
}

/*
 * SHOW hook for a secret: the value for superusers, a mask for everyone
 * else, so that pg_read_all_settings does not reveal it either.
 */
static const char *
TokenShowSecret(void)
{
	if (!superuser())
		return "********";
	return token_jwt_secret ? token_jwt_secret : "";
}

/* SHOW hook for the JWKS document, masked like the secret. */
static const char *
TokenShowJwks(void)
{
	if (!superuser())
		return "********";
	return token_jwt_jwks ? token_jwt_jwks : "";
}

/*
 * Parse wsnotify.jwt_algorithms when it is set, rejecting an unknown name
 * and "none" then rather than at the first token; the parsed mask goes to
 * the assign hook as extra.
 */
static bool
TokenCheckAlgorithms(char **newval, void **extra, GucSource source)
{
	char	   *bad_name = NULL;
	uint32		mask;
	uint32	   *parsed;

	if (!TokenParseAlgorithms(*newval, &mask, &bad_name))
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("\"%s\" is not an accepted JWT algorithm", bad_name);
		GUC_check_errhint("Use a comma-separated list of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512.");
		return false;
	}
	parsed = malloc(sizeof(uint32));	/* guc.c frees extra with free() */
	if (parsed == NULL)
		return false;
	*parsed = mask;
	*extra = parsed;
	return true;
}

/* Install the mask TokenCheckAlgorithms parsed. */
static void
TokenAssignAlgorithms(const char *newval, void *extra)
{
	token_allowed = extra ? *(uint32 *) extra : 0;
}

/*
 * Parse a comma-separated list of supported algorithm names (any case:
 * SQL lower-cases an unquoted list) into a mask of token_algorithms; false
 * with *bad_name when an item is not one, or the list is empty.  For the
 * GUC check hook, so it reports through bad_name, never ereport.
 */
static bool
TokenParseAlgorithms(const char *list, uint32 *mask, char **bad_name)
{
	char	   *copy;
	char	   *item;
	char	   *next;

	*mask = 0;
	*bad_name = "";
	if (list == NULL)
		return false;
	copy = pstrdup(list);
	for (item = copy; item != NULL; item = next)
	{
		const TokenAlgorithm *alg;
		char	   *end;

		next = strchr(item, ',');
		if (next != NULL)
			*next++ = '\0';
		while (isspace((unsigned char) *item))
			item++;
		end = item + strlen(item);
		while (end > item && isspace((unsigned char) end[-1]))
			*--end = '\0';
		alg = TokenFindAlgorithm(item, strlen(item), false);
		if (alg == NULL)
		{
			*bad_name = item;
			return false;
		}
		*mask |= 1U << (alg - token_algorithms);
	}
	return *mask != 0;
}

/*
 * Refuse a secret from ALTER ROLE/DATABASE ... SET or a function's SET
 * clause: those are stored in pg_db_role_setting and pg_proc, which every
 * role can read.
 */
static bool
TokenCheckSecretSource(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (source != PGC_S_TEST && source != PGC_S_DATABASE &&
		source != PGC_S_USER && source != PGC_S_DATABASE_USER)
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("wsnotify secrets cannot be set per role, per database or per function");
	GUC_check_errdetail("Such settings are stored in catalogs that every role can read.");
	GUC_check_errhint("Set it in postgresql.conf or with ALTER SYSTEM.");
	return false;
}

/*
 * verify_token(token text) returns jsonb: verify with the configured keys.
 */
Datum
verify_token(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("missing token"),
				 errdetail("The token is NULL.")));
	PG_RETURN_JSONB_P(TokenVerifyConfigured(TokenTextArg(fcinfo, 0)));
}

/*
 * verify_token(token text, key text, algorithm text) returns jsonb: verify
 * with the given key, accepting only the given algorithm.
 */
Datum
verify_token_with_key(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("missing token"),
				 errdetail("The token is NULL.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key must not be null"),
				 errhint("Pass a shared secret for HS* or a PEM public key for RS* and ES*.")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("algorithm must not be null"),
				 errhint("Pass one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512.")));
	PG_RETURN_JSONB_P(TokenVerifyWithKey(TokenTextArg(fcinfo, 0),
										 TokenTextArg(fcinfo, 1),
										 TokenTextArg(fcinfo, 2)));
}

/* A text argument as a palloc'd C string (text_to_cstring, see above). */
static char *
TokenTextArg(FunctionCallInfo fcinfo, int argno)
{
	text	   *arg = PG_GETARG_TEXT_PP(argno);

	return pnstrdup(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg));
}

/*
 * Verify with the configured keys and algorithms.  Refused unless the
 * library was preloaded: otherwise the settings may have been readable
 * by every role as placeholders before this session loaded it.
 */
Jsonb *
TokenVerifyConfigured(const char *token)
{
	TokenKeySource source = {NULL, NULL};

	if (!wsnotify_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wsnotify is not loaded through shared_preload_libraries"),
				 errdetail("Until the library is loaded, its settings are placeholders that any role can read, so configured keys are not used."),
				 errhint("Add wsnotify to shared_preload_libraries and restart the server, or pass the key to verify_token(token, key, algorithm).")));
	return TokenVerify(token, &source);
}

/*
 * Verify with an explicit key; only the given algorithm is accepted.
 */
Jsonb *
TokenVerifyWithKey(const char *token, const char *key, const char *algorithm)
{
	TokenKeySource source = {key, algorithm};

	if (TokenFindAlgorithm(algorithm, strlen(algorithm), false) == NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("algorithm not allowed"),
				 errdetail("\"%s\" is not a supported JWT algorithm.", algorithm),
				 errhint("Use one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512.")));
	return TokenVerify(token, &source);
}

/*
 * Parse, verify and check one token; return its claims.  The jansson
 * trees are freed however this ends.
 */
static Jsonb *
TokenVerify(const char *token, const TokenKeySource *source)
{
	TokenParts	parts;
	TokenTrees *trees = palloc0(sizeof(TokenTrees));
	Jsonb	   *result = NULL;

	TokenCheckLength(token);
	TokenSplit(token, &parts);
	PG_TRY();
	{
		trees->header = TokenParseJson(parts.header, parts.header_len, "header");
		result = TokenVerifyParsed(&parts, trees, source);
	}
	PG_FINALLY();
	{
		if (trees->header != NULL)
			json_decref(trees->header);
		if (trees->claims != NULL)
			json_decref(trees->claims);
	}
	PG_END_TRY();
	return result;
}

/*
 * The steps after the header is parsed: algorithm, key, signature, claims.
 * The parsed payload goes into trees, so that the caller can free it.
 */
static Jsonb *
TokenVerifyParsed(TokenParts *parts, TokenTrees *trees,
				  const TokenKeySource *source)
{
	const TokenAlgorithm *alg = TokenHeaderAlgorithm(trees->header, source);
	json_t	   *claims;
	JwksKey		jwk;

	if (TokenJwksKey(trees->header, alg, source, &jwk))
	{
		if (alg->family == TOKEN_HMAC)
			TokenVerifyHmac(parts, alg, jwk.secret, jwk.secret_len);
		else if (!TokenPublicSignatureValid(parts, alg, jwk.pkey))
			ereport(ERROR,
					(errcode(TOKEN_ERRCODE),
					 errmsg("bad signature"),
					 errdetail("The %s signature does not match the key.", alg->name)));
	}
	else
	{
		const char *key = TokenKeyFor(alg, source);

		if (alg->family == TOKEN_HMAC)
			TokenVerifyHmac(parts, alg, (const unsigned char *) key, strlen(key));
		else
			TokenVerifyPublic(parts, alg, key, source->key == NULL);
	}

	claims = trees->claims = TokenParseJson(parts->payload, parts->payload_len,
											"payload");
	TokenCheckTimes(claims);
	TokenCheckIssuer(claims);
	TokenCheckAudience(claims);
	TokenCheckUserClaim(claims);
	return TokenClaimsToJsonb(parts->payload, parts->payload_len);
}

/* Refuse a token longer than wsnotify.jwt_max_length, unparsed. */
static void
TokenCheckLength(const char *token)
{
	size_t		len = strlen(token);

	if (len > (size_t) token_jwt_max_length)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("token too long"),
				 errdetail("The token is %zu bytes long; wsnotify.jwt_max_length is %d.",
						   len, token_jwt_max_length)));
}

/* Raise the "malformed token" error with a detail that names no content. */
static void
TokenRefuseMalformed(const char *detail)
{
	ereport(ERROR,
			(errcode(TOKEN_ERRCODE),
			 errmsg("malformed token"),
			 errdetail("%s", detail)));
}

/*
 * Split header.payload.signature and base64url-decode each part.
 */
static void
TokenSplit(const char *token, TokenParts *parts)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	const char *sig;

	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		TokenRefuseMalformed("A token has three parts separated by dots.");
	sig = dot2 + 1;
	if (dot1 == token || dot2 == dot1 + 1)
		TokenRefuseMalformed("The header or the payload is empty.");

	parts->token = token;
	parts->signed_len = dot2 - token;
	parts->header = (char *) Base64UrlDecode(token, dot1 - token,
											  &parts->header_len);
	parts->payload = (char *) Base64UrlDecode(dot1 + 1, dot2 - dot1 - 1,
											   &parts->payload_len);
	parts->signature = Base64UrlDecode(sig, strlen(sig),
										&parts->signature_len);
	if (parts->header == NULL || parts->payload == NULL || parts->signature == NULL)
		TokenRefuseMalformed("A part is not valid unpadded base64url.");
}

/*
 * Parse a decoded part as a JSON object: no duplicate keys, no NUL.  The
 * caller owns (and must json_decref) the result.
 */
static json_t *
TokenParseJson(const char *json, size_t len, const char *what)
{
	json_error_t error;
	json_t	   *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &error);

	if (root == NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("malformed token"),
				 errdetail("The %s is not valid JSON.", what)));
	if (!json_is_object(root))
	{
		json_decref(root);
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("malformed token"),
				 errdetail("The %s is not a JSON object.", what)));
	}
	return root;
}

/*
 * The header's algorithm, if it is allowed; refuse it otherwise, naming it
 * only when it is a name we know (a header may hold anything).
 */
static const TokenAlgorithm *
TokenHeaderAlgorithm(json_t *header, const TokenKeySource *source)
{
	json_t	   *alg_json = json_object_get(header, "alg");
	const TokenAlgorithm *alg;

	if (!json_is_string(alg_json))
		TokenRefuseMalformed("The header has no \"alg\" string.");
	if (json_object_get(header, "crit") != NULL)
		TokenRefuseMalformed("The header has a \"crit\" member, which is not supported.");

	alg = TokenFindAlgorithm(json_string_value(alg_json),
							 json_string_length(alg_json), true);
	if (alg == NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("algorithm not allowed"),
				 strcmp(json_string_value(alg_json), "none") == 0 ?
				 errdetail("Unsigned tokens (alg \"none\") are never accepted.") :
				 errdetail("The token's algorithm is not a supported JWT algorithm.")));
	if (source->algorithm != NULL ? pg_strcasecmp(alg->name, source->algorithm) != 0
		: !TokenAlgorithmAllowed(alg))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("algorithm not allowed"),
				 source->algorithm != NULL ?
				 errdetail("The token is signed with %s, not %s.",
						   alg->name, source->algorithm) :
				 errdetail("The token is signed with %s, which is not in wsnotify.jwt_algorithms.",
						   alg->name)));
	return alg;
}

/*
 * The supported algorithm with this name, or NULL.  A token's header must
 * spell it exactly; configured names may be in any case, because SQL
 * lower-cases an unquoted list (SET wsnotify.jwt_algorithms = HS256, RS256).
 */
static const TokenAlgorithm *
TokenFindAlgorithm(const char *name, size_t len, bool exact)
{
	for (size_t i = 0; i < lengthof(token_algorithms); i++)
	{
		const char *known = token_algorithms[i].name;

		if (strlen(known) == len &&
			(exact ? memcmp(known, name, len) == 0
			 : pg_strncasecmp(known, name, len) == 0))
			return &token_algorithms[i];
	}
	return NULL;
}

/* Is the algorithm in wsnotify.jwt_algorithms? */
static bool
TokenAlgorithmAllowed(const TokenAlgorithm *alg)
{
	return (token_allowed & (1U << (alg - token_algorithms))) != 0;
}

/*
 * The key for this algorithm: the given one, or the configured one of the
 * algorithm's family (the secret for HS*, the public key otherwise; never
 * the other).  A PEM text is refused as an HMAC secret.
 */
static const char *
TokenKeyFor(const TokenAlgorithm *alg, const TokenKeySource *source)
{
	const char *key = source->key;
	const char *setting = alg->family == TOKEN_HMAC ?
		"wsnotify.jwt_secret" : "wsnotify.jwt_public_key";

	if (key == NULL)
		key = alg->family == TOKEN_HMAC ?
			token_jwt_secret : token_jwt_public_key;
	if (key == NULL || key[0] == '\0')
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("no key configured"),
				 source->key != NULL ?
				 errdetail("The key given for %s is empty.", alg->name) :
				 errdetail("%s tokens need %s, which is not set.", alg->name, setting)));
	if (alg->family == TOKEN_HMAC && strstr(key, "-----BEGIN") != NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("key does not fit the algorithm"),
				 errdetail("%s needs a shared secret, but the key is a PEM text.", alg->name),
				 errhint("Never use a public key as an HMAC secret: anyone who has it could sign tokens.")));
	return key;
}

/*
 * With the configured keys, the key wsnotify.jwt_jwks picks for this token
 * (jwks.c: by its "kid", or the only one that fits); false when the
 * single-key settings decide.  A "kid" must be a string.
 */
static bool
TokenJwksKey(json_t *header, const TokenAlgorithm *alg,
			 const TokenKeySource *source, JwksKey *out)
{
	json_t	   *kid = json_object_get(header, "kid");
	const char *single = alg->family == TOKEN_HMAC ?
		token_jwt_secret : token_jwt_public_key;
	bool		single_fits = single != NULL && single[0] != '\0';
	EVP_PKEY   *pkey;

	if (source->key != NULL || token_jwt_jwks == NULL || token_jwt_jwks[0] == '\0')
		return false;
	if (kid != NULL && !json_is_string(kid))
		TokenRefuseMalformed("The header's \"kid\" is not a string.");
	/* does the single-key setting count as a candidate for a token without kid? */
	if (single_fits && alg->family != TOKEN_HMAC)
		single_fits = (pkey = TokenParsePublicKey(single)) != NULL &&
			TokenKeyFits(pkey, alg);
	return JwksChoose(token_jwt_jwks, kid ? json_string_value(kid) : NULL,
					  alg->name, single_fits, out);
}

/*
 * HMAC the signed part with OpenSSL and compare it in constant time.
 */
static void
TokenVerifyHmac(const TokenParts *parts, const TokenAlgorithm *alg,
				const unsigned char *secret, size_t secret_len)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (HMAC(alg->digest(), secret, (int) secret_len,
			 (const unsigned char *) parts->token, parts->signed_len,
			 mac, &mac_len) == NULL)
		elog(ERROR, "HMAC computation failed");
	if (parts->signature_len != mac_len ||
		CRYPTO_memcmp(mac, parts->signature, mac_len) != 0)
	{
		OPENSSL_cleanse(mac, sizeof(mac));
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("bad signature"),
				 errdetail("The %s signature does not match the key.", alg->name)));
	}
	OPENSSL_cleanse(mac, sizeof(mac));
}

/*
 * The last PEM text parsed and its key, kept for the life of the backend:
 * OpenSSL 3 takes far longer to decode a PEM key than to verify with it.
 */
static char *cached_pem = NULL;
static EVP_PKEY *cached_key = NULL;

/*
 * The parsed public key of a PEM text, from the cache or decoded into it;
 * NULL when the text holds no public key.  The cache owns the key.
 */
static EVP_PKEY *
TokenParsePublicKey(const char *pem)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;

	if (cached_pem != NULL && strcmp(cached_pem, pem) == 0)
		return cached_key;
	bio = BIO_new_mem_buf(pem, -1);
	pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	if (pkey == NULL)
		return NULL;
	EVP_PKEY_free(cached_key);
	if (cached_pem != NULL)
		pfree(cached_pem);
	cached_key = NULL;
	cached_pem = MemoryContextStrdup(TopMemoryContext, pem);
	cached_key = pkey;
	return pkey;
}

/*
 * The public key of the PEM text, checked to fit the algorithm (RSA, or EC
 * on the algorithm's curve).  The key belongs to the cache: do not free.
 */
static EVP_PKEY *
TokenLoadPublicKey(const TokenAlgorithm *alg, const char *pem, bool configured)
{
	EVP_PKEY   *pkey = TokenParsePublicKey(pem);

	if (pkey == NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("invalid public key"),
				 errdetail("The %s is not a PEM public key.",
						   configured ? "value of wsnotify.jwt_public_key" : "key given"),
				 errhint("Use the PEM text that starts with \"-----BEGIN PUBLIC KEY-----\".")));
	if (!TokenKeyFits(pkey, alg))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("key does not fit the algorithm"),
				 alg->family == TOKEN_RSA ?
				 errdetail("%s needs an RSA public key, and %s is not one.",
						   alg->name, configured ? "wsnotify.jwt_public_key" : "the key given") :
				 errdetail("%s needs an EC public key on curve %s, and %s is not one.",
						   alg->name, alg->curve_name,
						   configured ? "wsnotify.jwt_public_key" : "the key given")));
	return pkey;
}

/* Is the key of the algorithm's type, and for ES*, on its curve? */
static bool
TokenKeyFits(EVP_PKEY *pkey, const TokenAlgorithm *alg)
{
	char		group[80];
	size_t		group_len = 0;

	if (alg->family == TOKEN_RSA)
		return EVP_PKEY_base_id(pkey) == EVP_PKEY_RSA;
	return EVP_PKEY_base_id(pkey) == EVP_PKEY_EC &&
		EVP_PKEY_get_group_name(pkey, group, sizeof(group), &group_len) == 1 &&
		OBJ_sn2nid(group) == alg->curve_nid;
}

/*
 * A JWS ECDSA signature (R || S, each the curve's size) as the DER that
 * OpenSSL verifies; NULL when its length is wrong.  Caller OPENSSL_frees.
 */
static unsigned char *
TokenEcdsaToDer(const TokenParts *parts, EVP_PKEY *pkey, int *der_len)
{
	int			half = (EVP_PKEY_get_bits(pkey) + 7) / 8;
	ECDSA_SIG  *sig;
	BIGNUM	   *r;
	BIGNUM	   *s;
	unsigned char *der = NULL;

	*der_len = 0;
	if (parts->signature_len != (size_t) half * 2)
		return NULL;
	sig = ECDSA_SIG_new();
	r = BN_bin2bn(parts->signature, half, NULL);
	s = BN_bin2bn(parts->signature + half, half, NULL);
	if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1)
	{
		r = s = NULL;			/* now owned by sig */
		*der_len = i2d_ECDSA_SIG(sig, &der);
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return *der_len > 0 ? der : NULL;
}

/*
 * Does the RSA (PKCS#1 v1.5) or ECDSA signature verify with the key?
 * Frees everything it allocates; never raises.
 */
static bool
TokenPublicSignatureValid(const TokenParts *parts, const TokenAlgorithm *alg,
						  EVP_PKEY *pkey)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	const unsigned char *sig = parts->signature;
	size_t		sig_len = parts->signature_len;
	bool		valid = false;

	if (alg->family == TOKEN_EC)
	{
		int			der_len;

		der = TokenEcdsaToDer(parts, pkey, &der_len);
		sig = der;
		sig_len = der_len;
	}
	if (ctx != NULL && sig != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, alg->digest(), NULL, pkey) == 1)
		valid = EVP_DigestVerify(ctx, sig, sig_len,
								 (const unsigned char *) parts->token,
								 parts->signed_len) == 1;
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return valid;
}

/*
 * Verify an RS* or ES* token with the PEM public key, whose type is
 * checked against the algorithm first.
 */
static void
TokenVerifyPublic(const TokenParts *parts, const TokenAlgorithm *alg,
				  const char *pem, bool configured)
{
	EVP_PKEY   *pkey = TokenLoadPublicKey(alg, pem, configured);

	if (!TokenPublicSignatureValid(parts, alg, pkey))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("bad signature"),
				 errdetail("The %s signature does not match the key.", alg->name)));
}

/*
 * A numeric claim as a double; refuse a present but non-numeric one.
 */
static double
TokenNumericClaim(json_t *claims, const char *name, bool *found)
{
	json_t	   *value = json_object_get(claims, name);

	*found = value != NULL;
	if (value == NULL)
		return 0;
	if (!json_is_number(value))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("malformed token"),
				 errdetail("The \"%s\" claim is not a number.", name)));
	return json_number_value(value);
}

/* A claim's time as "YYYY-MM-DD HH:MM:SS UTC", for messages. */
static char *
TokenFormatTime(double seconds)
{
	struct tm	tm;
	time_t		t = (time_t) seconds;
	char		buf[64];

	if (seconds < -1e15 || seconds > 1e15 || gmtime_r(&t, &tm) == NULL ||
		strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		return psprintf("%.0f seconds after 1970", seconds);
	return pstrdup(buf);
}

/* exp and nbf against the clock, with wsnotify.jwt_leeway either way. */
static void
TokenCheckTimes(json_t *claims)
{
	double		now = (double) time(NULL);
	double		leeway = token_jwt_leeway;
	bool		has_exp;
	bool		has_nbf;
	double		exp = TokenNumericClaim(claims, "exp", &has_exp);
	double		nbf = TokenNumericClaim(claims, "nbf", &has_nbf);

	if (has_exp && now - leeway >= exp)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("token expired"),
				 errdetail("The token expired at %s (wsnotify.jwt_leeway is %d seconds).",
						   TokenFormatTime(exp), token_jwt_leeway)));
	if (has_nbf && now + leeway < nbf)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("token not yet valid"),
				 errdetail("The token is not valid before %s (wsnotify.jwt_leeway is %d seconds).",
						   TokenFormatTime(nbf), token_jwt_leeway)));
}

/* iss must equal wsnotify.jwt_issuer when that is set. */
static void
TokenCheckIssuer(json_t *claims)
{
	json_t	   *iss;

	if (token_jwt_issuer == NULL || token_jwt_issuer[0] == '\0')
		return;
	iss = json_object_get(claims, "iss");
	if (iss == NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("wrong issuer"),
				 errdetail("The token has no \"iss\" claim, and wsnotify.jwt_issuer is set.")));
	if (!json_is_string(iss) || strcmp(json_string_value(iss), token_jwt_issuer) != 0)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("wrong issuer"),
				 errdetail("The \"iss\" claim is not the value of wsnotify.jwt_issuer.")));
}

/* Is this aud element the configured audience? */
static bool
TokenAudienceMatches(json_t *value)
{
	return json_is_string(value) &&
		strcmp(json_string_value(value), token_jwt_audience) == 0;
}

/* aud (a string or an array of them) must hold wsnotify.jwt_audience when set. */
static void
TokenCheckAudience(json_t *claims)
{
	json_t	   *aud;
	bool		matched = false;

	if (token_jwt_audience == NULL || token_jwt_audience[0] == '\0')
		return;
	aud = json_object_get(claims, "aud");
	if (aud == NULL)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("wrong audience"),
				 errdetail("The token has no \"aud\" claim, and wsnotify.jwt_audience is set.")));
	if (json_is_array(aud))
	{
		for (size_t i = 0; i < json_array_size(aud) && !matched; i++)
			matched = TokenAudienceMatches(json_array_get(aud, i));
	}
	else
		matched = TokenAudienceMatches(aud);
	if (!matched)
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("wrong audience"),
				 errdetail("The \"aud\" claim does not include the value of wsnotify.jwt_audience.")));
}

/* The claim named by wsnotify.user_claim: a non-empty string or an integer. */
static void
TokenCheckUserClaim(json_t *claims)
{
	const char *name = token_user_claim ? token_user_claim : "sub";
	json_t	   *user = json_object_get(claims, name);

	if (user == NULL || json_is_null(user))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("missing claim"),
				 errdetail("The token has no \"%s\" claim, which wsnotify.user_claim names as the user id.",
						   name)));
	if (!(json_is_integer(user) ||
		  (json_is_string(user) && json_string_length(user) > 0)))
		ereport(ERROR,
				(errcode(TOKEN_ERRCODE),
				 errmsg("invalid claim"),
				 errdetail("The \"%s\" claim must be a non-empty string or an integer.",
						   name)));
}

/*
 * The payload (already valid JSON) as jsonb, keeping numbers exactly as
 * written.  Any failure of the conversion is reported as a malformed token,
 * never with PostgreSQL's message, which would quote the payload.
 */
static Jsonb *
TokenClaimsToJsonb(const char *payload, size_t len)
{
	MemoryContext context = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	PG_TRY();
	{
		char	   *server = pg_any_to_server(payload, (int) len, PG_UTF8);

		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													CStringGetDatum(server)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		FlushErrorState();
		TokenRefuseMalformed("The payload cannot be stored as jsonb in this database.");
	}
	PG_END_TRY();
	return result;
}
