/*
 * fuzz_token.c: libFuzzer target for token verification (extension/token.c,
 * jwks.c and base64url.c, linked unchanged, with the backend stand-ins of
 * pgshim.c, which also holds the settings TokenInit defines).
 *
 * The first byte picks what to call; the rest is the input:
 *   0  verify_token(token) with the configured secret, EC key and algorithms
 *   1  verify_token(token, secret, 'HS256')
 *   2  verify_token(token, rsa_key, 'RS256')
 *   3  "header\npayload": the harness signs it (HS256, the configured
 *      secret), so the claim checks behind the signature are reached too
 *   4  the input is set as wsnotify.jwt_algorithms (its check hook's parser)
 *   5  the input is wsnotify.jwt_jwks (a JWKS document); a token signed with
 *      the secret under kid "k1" is verified against it (jwks.c's parser)
 * A refusal is an ERROR caught here; a crash or sanitizer report is a bug.
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fmgr.h"

#include "wsnotify.h"
#include "pgshim.h"

/* base64url without padding of n bytes into out (room for 4n/3+4). */
static size_t
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		o = 0;

	for (size_t i = 0; i < n; i += 3)
	{
		unsigned	v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) |
		(i + 2 < n ? in[i + 2] : 0);

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = tab[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = tab[v & 63];
	}
	out[o] = '\0';
	return o;
}

/* A compact JWS of header and payload, signed HS256 with the secret. */
static char *
sign_hs256(const char *header, size_t hl, const char *payload, size_t pl)
{
	char	   *tok = palloc((hl + pl) * 2 + 128);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t		n;

	n = b64url((const unsigned char *) header, hl, tok);
	tok[n++] = '.';
	n += b64url((const unsigned char *) payload, pl, tok + n);
	HMAC(EVP_sha256(), shim_jwt_secret, (int) strlen(shim_jwt_secret),
		 (unsigned char *) tok, n, mac, &maclen);
	tok[n++] = '.';
	b64url(mac, maclen, tok + n);
	return tok;
}

/* One call of the mode the first byte picks, inside a PG_TRY. */
static void
run_one(int mode, const char *in, size_t len)
{
	switch (mode)
	{
		case 0:
			TokenVerifyConfigured(in);
			break;
		case 1:
			TokenVerifyWithKey(in, shim_jwt_secret, "HS256");
			break;
		case 2:
			TokenVerifyWithKey(in, shim_rsa_public_key, "RS256");
			break;
		case 3:
			{
				const char *nl = memchr(in, '\n', len);
				size_t		hl = nl ? (size_t) (nl - in) : len;

				TokenVerifyConfigured(sign_hs256(in, hl, nl ? nl + 1 : "",
												 nl ? len - hl - 1 : 0));
				break;
			}
		case 4:
			if (shim_set("wsnotify.jwt_algorithms", in))
				shim_set("wsnotify.jwt_algorithms", "HS256,RS256,ES256");
			break;
		default:
			{
				static const char header[] = "{\"alg\":\"HS256\",\"kid\":\"k1\"}";
				static const char claims[] = "{\"sub\":\"a\",\"aud\":\"fuzz-aud\","
					"\"iss\":\"fuzz-iss\",\"exp\":4102444800}";

				shim_set("wsnotify.jwt_jwks", in);
				TokenVerifyConfigured(sign_hs256(header, strlen(header),
												 claims, strlen(claims)));
				break;
			}
	}
}

/* Once, before the first input: define and configure token.c's settings. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	shim_configure();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sigjmp_buf	jb;
	char	   *in;
	int			mode;

	if (size < 1)
		return 0;
	mode = data[0] % 6;
	in = palloc(size);
	memcpy(in, data + 1, size - 1);
	in[size - 1] = '\0';
	if (sigsetjmp(jb, 0) == 0)
	{
		PG_exception_stack = &jb;
		run_one(mode, in, size - 1);
	}
	shim_set("wsnotify.jwt_jwks", "");
	shim_reset();
	return 0;
}
