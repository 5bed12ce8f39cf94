/*-------------------------------------------------------------------------
 *
 * jwks.c
 *	  wsnotify.jwt_jwks: a JSON Web Key Set (RFC 7517) of RSA, EC and oct
 *	  keys, parsed into OpenSSL keys and cached per backend; the token's
 *	  "kid" picks the key, and the key's "kty" (and "alg", "crv", "use")
 *	  pins what it may verify.
 *
 * Rules (docs/tokens.md):
 *	 - an oct key verifies only HS*, an RSA key only RS*, an EC key only the
 *	   ES* of its curve (P-256 ES256, P-384 ES384, P-521 ES512); a key with
 *	   "alg" only that algorithm; a key with "use" other than "sig" nothing;
 *	 - a token with a kid must name a key of the set that fits its alg;
 *	 - a token without kid uses the one key that fits its alg, counting the
 *	   single-key setting of its family (wsnotify.jwt_secret or
 *	   wsnotify.jwt_public_key); with several it is refused; with none of
 *	   the set, the single-key setting decides as before.
 *	 - keys of other types (e.g. OKP) are kept only so that a kid naming
 *	   one gets a clear refusal.
 *
 * The set is parsed when the setting's text changes (a SIGHUP reload, a
 * SET) and kept in its own memory context until the next change; an
 * invalid set is not cached and refused at every verification, with a
 * detail that names the key by its position and never holds key material.
 * The parser never raises: it returns the detail, so that the OpenSSL keys
 * made so far are freed first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "utils/memutils.h"

#include "base64url.h"
#include "jwks.h"

/* Shortest RSA modulus accepted, in bits. */
#define JWKS_RSA_MIN_BITS 2048

/* Most keys a set may hold. */
#define JWKS_MAX_KEYS 64

/* The key types of a set. */
typedef enum JwkType
{
	JWK_OCT,
	JWK_RSA,
	JWK_EC,
	JWK_OTHER					/* kept only to refuse its kid clearly */
} JwkType;

/* One key of the set. */
typedef struct Jwk
{
	char	   *kid;			/* NULL when the key has none */
	JwkType		type;
	char	   *alg;			/* its "alg", or NULL */
	bool		for_signing;	/* no "use", or "use": "sig" */
	const char *curve;			/* EC: "P-256", "P-384" or "P-521" */
	unsigned char *secret;		/* oct */
	size_t		secret_len;
	EVP_PKEY   *pkey;			/* RSA, EC */
} Jwk;

/* An EC curve: its JWK name, OpenSSL group, JWS algorithm, coordinate size. */
typedef struct JwkCurve
{
	const char *crv;
	const char *group;
	const char *alg;
	int			size;
} JwkCurve;

static const JwkCurve jwk_curves[] = {
	{"P-256", "prime256v1", "ES256", 32},
	{"P-384", "secp384r1", "ES384", 48},
	{"P-521", "secp521r1", "ES512", 66},
};

/* The cached set: the setting's text and its keys, in jwks_context. */
static MemoryContext jwks_context = NULL;
static char *cached_text = NULL;
static Jwk *cached_keys = NULL;
static int	cached_count = 0;

static void JwksLoad(const char *text);
static void JwksForget(void);
static const char *JwksParse(const char *text, Jwk *keys, int *count);
static const char *JwksParseKey(json_t *obj, int i, Jwk *key);
static const char *JwksParseRsa(json_t *obj, int i, Jwk *key);
static const char *JwksParseEc(json_t *obj, int i, Jwk *key);
static const char *JwksParseOct(json_t *obj, int i, Jwk *key);
static unsigned char *JwksMember(json_t *obj, const char *name, size_t *len);
static EVP_PKEY *JwksBuildKey(const char *type, OSSL_PARAM_BLD *bld);
static void JwksFreeKeys(Jwk *keys, int count);
static const char *JwksWhyNotFit(const Jwk *key, const char *alg);
static const char *JwksTypeName(JwkType type);

/*
 * Pick the key of the set for a token; see jwks.h.
 */
bool
JwksChoose(const char *jwks, const char *kid, const char *alg,
		   bool single_key_set, JwksKey *out)
{
	const Jwk  *chosen = NULL;
	int			fitting = 0;

	if (jwks == NULL || jwks[0] == '\0')
		return false;
	JwksLoad(jwks);
	for (int i = 0; i < cached_count; i++)
	{
		const Jwk  *key = &cached_keys[i];

		if (kid != NULL && key->kid != NULL && strcmp(kid, key->kid) == 0)
			chosen = key;
		else if (kid == NULL && JwksWhyNotFit(key, alg) == NULL)
		{
			chosen = key;
			fitting++;
		}
	}
	if (kid != NULL && chosen == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("unknown key id"),
				 errdetail("No key in wsnotify.jwt_jwks has the token's \"kid\"."),
				 errhint("If the issuer rotated its keys, load its current key set into wsnotify.jwt_jwks.")));
	if (kid != NULL && JwksWhyNotFit(chosen, alg) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("key does not fit the algorithm"),
				 errdetail("%s", JwksWhyNotFit(chosen, alg))));
	if (kid == NULL && fitting == 0)
		return false;
	if (kid == NULL && fitting + (single_key_set ? 1 : 0) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("key id required"),
				 errdetail("The token has no \"kid\" header, and %d configured keys could verify %s tokens.",
						   fitting + (single_key_set ? 1 : 0), alg),
				 errhint("Sign tokens with a \"kid\" that names a key of wsnotify.jwt_jwks.")));
	out->secret = chosen->secret;
	out->secret_len = chosen->secret_len;
	out->pkey = chosen->pkey;
	return true;
}

/*
 * Make the cache hold the set of this text: parse it when it changed.  An
 * invalid set is refused (and not cached), without key material.
 */
static void
JwksLoad(const char *text)
{
	MemoryContext old;
	Jwk		   *keys;
	int			count = 0;
	const char *error;

	if (cached_text != NULL && strcmp(cached_text, text) == 0)
		return;
	JwksForget();
	jwks_context = AllocSetContextCreate(TopMemoryContext, "wsnotify jwks",
										 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(jwks_context);
	keys = palloc0(sizeof(Jwk) * JWKS_MAX_KEYS);
	error = JwksParse(text, keys, &count);
	MemoryContextSwitchTo(old);
	if (error != NULL)
	{
		char	   *detail = pstrdup(error);

		JwksFreeKeys(keys, count);
		MemoryContextDelete(jwks_context);
		jwks_context = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("invalid key set"),
				 errdetail("wsnotify.jwt_jwks: %s", detail),
				 errhint("Set wsnotify.jwt_jwks to a JWKS document: {\"keys\": [...]} with RSA, EC or oct public keys.")));
	}
	cached_keys = keys;
	cached_count = count;
	cached_text = MemoryContextStrdup(jwks_context, text);
}

/* Drop the cached set, its OpenSSL keys and (cleansed) secrets. */
static void
JwksForget(void)
{
	if (jwks_context == NULL)
		return;
	JwksFreeKeys(cached_keys, cached_count);
	MemoryContextDelete(jwks_context);
	jwks_context = NULL;
	cached_text = NULL;
	cached_keys = NULL;
	cached_count = 0;
}

/* Free the OpenSSL keys and cleanse the secrets of count keys. */
static void
JwksFreeKeys(Jwk *keys, int count)
{
	for (int i = 0; i < count; i++)
	{
		EVP_PKEY_free(keys[i].pkey);
		keys[i].pkey = NULL;
		if (keys[i].secret != NULL)
			OPENSSL_cleanse(keys[i].secret, keys[i].secret_len);
	}
}

/*
 * Parse a JWKS document into keys (at most JWKS_MAX_KEYS); NULL on success,
 * else a sentence saying what is wrong.  *count is how many keys hold
 * something to free, either way.
 */
static const char *
JwksParse(const char *text, Jwk *keys, int *count)
{
	json_error_t jerr;
	json_t	   *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	json_t	   *array = json_is_object(root) ? json_object_get(root, "keys") : NULL;
	const char *error = NULL;

	*count = 0;
	if (root == NULL)
		return "The value is not valid JSON.";
	if (!json_is_array(array))
		error = "The value is not a JSON object with a \"keys\" array.";
	else if (json_array_size(array) > JWKS_MAX_KEYS)
		error = psprintf("The set has %zu keys; at most %d are supported.",
						 json_array_size(array), JWKS_MAX_KEYS);
	for (size_t i = 0; error == NULL && i < json_array_size(array); i++)
	{
		error = JwksParseKey(json_array_get(array, i), (int) i, &keys[i]);
		*count = (int) i + 1;
		for (size_t j = 0; error == NULL && j < i; j++)
			if (keys[i].kid != NULL && keys[j].kid != NULL &&
				strcmp(keys[i].kid, keys[j].kid) == 0)
				error = psprintf("keys[%zu] and keys[%zu] have the same \"kid\".", j, i);
	}
	json_decref(root);
	return error;
}

/* Parse one key object of the set. */
static const char *
JwksParseKey(json_t *obj, int i, Jwk *key)
{
	json_t	   *kty = json_object_get(obj, "kty");
	json_t	   *kid = json_object_get(obj, "kid");
	json_t	   *alg = json_object_get(obj, "alg");
	json_t	   *use = json_object_get(obj, "use");

	if (!json_is_object(obj))
		return psprintf("keys[%d] is not a JSON object.", i);
	if (!json_is_string(kty))
		return psprintf("keys[%d] has no \"kty\" string.", i);
	if ((kid != NULL && !json_is_string(kid)) || (alg != NULL && !json_is_string(alg)) ||
		(use != NULL && !json_is_string(use)))
		return psprintf("keys[%d] has a \"kid\", \"alg\" or \"use\" that is not a string.", i);
	key->kid = kid ? pstrdup(json_string_value(kid)) : NULL;
	key->alg = alg ? pstrdup(json_string_value(alg)) : NULL;
	key->for_signing = use == NULL || strcmp(json_string_value(use), "sig") == 0;
	if (strcmp(json_string_value(kty), "RSA") == 0)
		return JwksParseRsa(obj, i, key);
	if (strcmp(json_string_value(kty), "EC") == 0)
		return JwksParseEc(obj, i, key);
	if (strcmp(json_string_value(kty), "oct") == 0)
		return JwksParseOct(obj, i, key);
	key->type = JWK_OTHER;
	return NULL;
}

/*
 * A base64url member (Base64UrlDecode's rule, the same as a token's
 * parts) decoded into palloc'd bytes; NULL when absent, not a string,
 * empty or invalid.
 */
static unsigned char *
JwksMember(json_t *obj, const char *name, size_t *len)
{
	json_t	   *value = json_object_get(obj, name);
	unsigned char *out;

	*len = 0;
	if (!json_is_string(value) || json_string_length(value) == 0)
		return NULL;
	out = Base64UrlDecode(json_string_value(value),
						  json_string_length(value), len);
	if (out == NULL || *len == 0)
		return NULL;
	return out;
}

/* An RSA public key from "n" and "e". */
static const char *
JwksParseRsa(json_t *obj, int i, Jwk *key)
{
	size_t		n_len;
	size_t		e_len;
	unsigned char *n = JwksMember(obj, "n", &n_len);
	unsigned char *e = JwksMember(obj, "e", &e_len);
	BIGNUM	   *bn_n;
	BIGNUM	   *bn_e;
	OSSL_PARAM_BLD *bld;

	key->type = JWK_RSA;
	if (json_object_get(obj, "d") != NULL)
		return psprintf("keys[%d] is an RSA private key; give only public keys.", i);
	if (n == NULL || e == NULL)
		return psprintf("keys[%d] (RSA) needs \"n\" and \"e\" in base64url.", i);
	bn_n = BN_bin2bn(n, (int) n_len, NULL);
	bn_e = BN_bin2bn(e, (int) e_len, NULL);
	if (bn_n != NULL && BN_num_bits(bn_n) < JWKS_RSA_MIN_BITS)
	{
		BN_free(bn_n);
		BN_free(bn_e);
		return psprintf("keys[%d] (RSA) is shorter than %d bits.", i, JWKS_RSA_MIN_BITS);
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld != NULL && bn_n != NULL && bn_e != NULL &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1)
		key->pkey = JwksBuildKey("RSA", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	if (key->pkey == NULL)
		return psprintf("keys[%d] is not a valid RSA public key.", i);
	return NULL;
}

/* An EC public key from "crv", "x" and "y". */
static const char *
JwksParseEc(json_t *obj, int i, Jwk *key)
{
	json_t	   *crv = json_object_get(obj, "crv");
	const JwkCurve *curve = NULL;
	size_t		x_len;
	size_t		y_len;
	unsigned char *x = JwksMember(obj, "x", &x_len);
	unsigned char *y = JwksMember(obj, "y", &y_len);
	unsigned char *point;
	OSSL_PARAM_BLD *bld;

	key->type = JWK_EC;
	if (json_object_get(obj, "d") != NULL)
		return psprintf("keys[%d] is an EC private key; give only public keys.", i);
	for (size_t c = 0; json_is_string(crv) && c < lengthof(jwk_curves); c++)
		if (strcmp(json_string_value(crv), jwk_curves[c].crv) == 0)
			curve = &jwk_curves[c];
	if (curve == NULL)
		return psprintf("keys[%d] (EC) needs \"crv\" P-256, P-384 or P-521.", i);
	key->curve = curve->crv;
	if (x == NULL || y == NULL || x_len != (size_t) curve->size ||
		y_len != (size_t) curve->size)
		return psprintf("keys[%d] (EC) needs \"x\" and \"y\" of %d bytes each in base64url.",
						i, curve->size);
	point = palloc(1 + 2 * curve->size);
	point[0] = 0x04;			/* uncompressed point */
	memcpy(point + 1, x, curve->size);
	memcpy(point + 1 + curve->size, y, curve->size);
	bld = OSSL_PARAM_BLD_new();
	if (bld != NULL &&
		OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve->group, 0) == 1 &&
		OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
										 1 + 2 * curve->size) == 1)
		key->pkey = JwksBuildKey("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	if (key->pkey == NULL)
		return psprintf("keys[%d] is not a valid EC public key (not a point on %s).",
						i, curve->crv);
	return NULL;
}

/* An oct (HMAC) key from "k". */
static const char *
JwksParseOct(json_t *obj, int i, Jwk *key)
{
	key->type = JWK_OCT;
	key->secret = JwksMember(obj, "k", &key->secret_len);
	if (key->secret == NULL)
		return psprintf("keys[%d] (oct) needs a non-empty \"k\" in base64url.", i);
	return NULL;
}

/*
 * An OpenSSL public key of this type from the built parameters, checked;
 * NULL when OpenSSL refuses it.
 */
static EVP_PKEY *
JwksBuildKey(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY_CTX *check = NULL;
	EVP_PKEY   *pkey = NULL;

	if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1)
	{
		check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (check == NULL || EVP_PKEY_public_check(check) != 1)
		{
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	}
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	ERR_clear_error();
	return pkey;
}

/* The name of a key type, for messages. */
static const char *
JwksTypeName(JwkType type)
{
	switch (type)
	{
		case JWK_OCT:
			return "an oct key";
		case JWK_RSA:
			return "an RSA key";
		case JWK_EC:
			return "an EC key";
		default:
			return "a key of an unsupported type";
	}
}

/*
 * NULL when the key may verify tokens of alg; else a sentence saying why
 * not (for the errdetail).
 */
static const char *
JwksWhyNotFit(const Jwk *key, const char *alg)
{
	const char *needs = alg[0] == 'H' ? "an oct key" :
		alg[0] == 'R' ? "an RSA key" : "an EC key";
	JwkType		type = alg[0] == 'H' ? JWK_OCT : alg[0] == 'R' ? JWK_RSA : JWK_EC;

	if (!key->for_signing)
		return "The key the token's \"kid\" names is not for signatures (\"use\").";
	if (key->type != type)
		return psprintf("The key the token's \"kid\" names is %s; %s needs %s.",
						JwksTypeName(key->type), alg, needs);
	if (key->alg != NULL && strcmp(key->alg, alg) != 0)
		return psprintf("The key the token's \"kid\" names is for another algorithm than %s.",
						alg);
	for (size_t c = 0; type == JWK_EC && c < lengthof(jwk_curves); c++)
		if (strcmp(jwk_curves[c].crv, key->curve) == 0 &&
			strcmp(jwk_curves[c].alg, alg) != 0)
			return psprintf("The key the token's \"kid\" names is on curve %s; %s needs another curve.",
							key->curve, alg);
	return NULL;
}
