/*-------------------------------------------------------------------------
 *
 * jwks.h
 *	  The key set of wsnotify.jwt_jwks (jwks.c), as seen by token.c: one
 *	  call that picks the key for a token, or says to use the single-key
 *	  settings (wsnotify.jwt_secret, wsnotify.jwt_public_key).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WSNOTIFY_JWKS_H
#define WSNOTIFY_JWKS_H

#include <openssl/evp.h>

/* A key chosen from the set; it belongs to the set's cache: do not free. */
typedef struct JwksKey
{
	const unsigned char *secret;	/* an "oct" key's bytes, else NULL */
	size_t		secret_len;
	EVP_PKEY   *pkey;			/* an RSA or EC public key, else NULL */
} JwksKey;

/*
 * Pick the key of the set `jwks` (the setting's text) for a token signed
 * with `alg` (e.g. "RS256") whose header has `kid` (NULL: none).
 * single_key_set: the single-key setting for alg's family is set too.
 * Returns true with *out filled, false when the single-key setting is to be
 * used (no set, or a token without kid that no key of the set fits);
 * raises SQLSTATE 28000 otherwise (invalid set, unknown kid, a key that does
 * not fit alg, or no kid while several keys could verify).
 */
extern bool JwksChoose(const char *jwks, const char *kid, const char *alg,
					   bool single_key_set, JwksKey *out);

#endif							/* WSNOTIFY_JWKS_H */
