/*
 * util.c: the clock, allocation, base64 and address helpers (util.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void
util_out_of_memory(size_t n)
{
	fprintf(stderr, "wsnotify-bridge: out of memory (%zu bytes), aborting\n", n);
	abort();
}

/* p, or the out-of-memory policy when it is NULL. */
static void *
util_check(void *p, size_t n)
{
	if (!p)
		util_out_of_memory(n);
	return p;
}

void *
util_alloc(size_t n)
{
	return util_check(malloc(n ? n : 1), n);
}

void *
util_calloc(size_t count, size_t n)
{
	return util_check(calloc(count ? count : 1, n ? n : 1), count * n);
}

void *
util_realloc(void *p, size_t n)
{
	return util_check(realloc(p, n ? n : 1), n);
}

char *
util_strdup(const char *s)
{
	return util_check(strdup(s), strlen(s) + 1);
}

int
util_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Value of one standard base64 character, or -1. */
static int
util_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

bool
util_base64_decode(const char *b64, size_t len, char *out, size_t *out_len)
{
	uint32_t bits = 0;
	int nbits = 0;
	size_t n = 0;

	while (len > 0 && b64[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++) {
		int v = util_b64_value((unsigned char) b64[i]);

		if (v < 0)
			return false;
		bits = (bits << 6) | (uint32_t) v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			out[n++] = (char) (bits >> nbits);
			bits &= (1u << nbits) - 1;
		}
	}
	out[n] = '\0';
	*out_len = n;
	return true;
}

bool
util_split_hostport(const char *s, char *host, size_t hn, char *port, size_t pn)
{
	const char *colon = strrchr(s, ':');

	if (!colon || !colon[1])
		return false;
	if (s[0] == '[' && colon > s + 1 && colon[-1] == ']')
		snprintf(host, hn, "%.*s", (int) (colon - s - 2), s + 1);
	else
		snprintf(host, hn, "%.*s", (int) (colon - s), s);
	snprintf(port, pn, "%s", colon + 1);
	return true;
}
