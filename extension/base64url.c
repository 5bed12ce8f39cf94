/*-------------------------------------------------------------------------
 *
 * base64url.c
 *	  The one base64url decoder of tokens (token.c) and key sets (jwks.c).
 *
 * Pure: palloc and nothing else of the backend, no SPI, so that the token
 * fuzz target (fuzz/fuzz_token.c) links it with token.c and jwks.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base64url.h"

static int	Base64UrlValue(unsigned char c);

/* Value of one base64url character, or -1. */
static int
Base64UrlValue(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict base64url as RFC 7515 section 2 defines it for every JWS part and
 * RFC 7517/7518 for every JWK member: the URL-safe alphabet only, no "="
 * padding, no length that leaves a lone character, and no set bits after
 * the last whole byte, so that each byte string has exactly one spelling.
 * Returns a palloc'd, NUL-terminated buffer, or NULL.
 */
unsigned char *
Base64UrlDecode(const char *in, size_t len, size_t *out_len)
{
	unsigned char *out = palloc(len * 3 / 4 + 1);
	uint32		bits = 0;
	int			nbits = 0;
	size_t		n = 0;

	if (len % 4 == 1)
		return NULL;
	for (size_t i = 0; i < len; i++)
	{
		int			v = Base64UrlValue((unsigned char) in[i]);

		if (v < 0)
			return NULL;
		bits = (bits << 6) | (uint32) v;
		nbits += 6;
		if (nbits >= 8)
		{
			nbits -= 8;
			out[n++] = (unsigned char) (bits >> nbits);
			bits &= (1U << nbits) - 1;
		}
	}
	if (bits != 0)
		return NULL;
	out[n] = '\0';
	*out_len = n;
	return out;
}
